import { register } from '../registry.js';

register({
  name: 'launch',
  summary:
    'run K pinned data-parallel ranks of a command (e.g. mpo launch --ranks 2 -- mpo train --config c.json)',
  usage: 'mpo launch --ranks K [--cores LIST] [--gpus LIST] [--job-id ID] [--tag-output] -- <command...>',
  async run(args) {
    const { launchMain } = await import('@mpo/allreduce');
    return launchMain(args);
  },
});
