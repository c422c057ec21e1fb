/** A subcommand: `mpo <name> ...args`. Returns the process exit code. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(args: string[]): Promise<number>;
}

const commands = new Map<string, Command>();

export function register(cmd: Command): void {
  commands.set(cmd.name, cmd);
}

export function lookup(name: string): Command | undefined {
  return commands.get(name);
}

export function all(): Command[] {
  return [...commands.values()].sort((a, b) => a.name.localeCompare(b.name));
}
