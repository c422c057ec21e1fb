// Where the PyTorch reference scripts of bench/ can run: a python with torch (Debian's python3-torch
// installs it for /usr/bin/python3). Without one the comparisons print our figures only and say why.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const referenceDir = dirname(fileURLToPath(import.meta.url));
export const referenceScript = (name) => join(referenceDir, name);

/** The python to run the references with, or null (and a message on stderr) when none has torch. */
export function torchPython() {
  for (const py of [process.env.MPO_REFERENCE_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean)) {
    const r = spawnSync(py, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  process.stderr.write(
    'PyTorch reference not run: no python with torch here (Debian: apt-get install python3-torch libopenblas0-pthread; ' +
      'or set MPO_REFERENCE_PYTHON). Only our own figures follow.\n',
  );
  return null;
}
