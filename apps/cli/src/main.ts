import { errorMessage } from '@mpo/util';
import { CliError, ExitCode } from './exit-codes.js';
import { all, lookup } from './registry.js';
import './commands/index.js';

function help(): string {
  const width = Math.max(...all().map((c) => c.name.length));
  return [
    'mpo: multilingual safety alignment (MPO and baselines) at sweep scale',
    '',
    'usage: mpo <command> [options]',
    '',
    ...all().map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "Run 'mpo <command> --help' for a command's options.",
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${help()}\n`);
    return name ? ExitCode.ok : ExitCode.usage;
  }
  if (name === '--version' || name === '-V') return lookup('version')!.run(rest);
  const cmd = lookup(name);
  if (!cmd) {
    process.stderr.write(`mpo: unknown command '${name}'\n\n${help()}\n`);
    return ExitCode.usage;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage: ${cmd.usage}\n\n${cmd.summary}\n`);
    return ExitCode.ok;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    if (String((err as { code?: string }).code).startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`mpo ${name}: ${errorMessage(err)}\n\nusage: ${cmd.usage}\n`);
      return ExitCode.usage;
    }
    if (err instanceof CliError) {
      process.stderr.write(`mpo ${name}: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`mpo ${name}: ${(err as Error).stack ?? err}\n`);
    return ExitCode.failure;
  }
}
