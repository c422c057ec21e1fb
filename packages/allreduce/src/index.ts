export {
  allreduceBench,
  allreduceBenchMain,
  type BenchOptions,
  type BenchResult,
  DEFAULT_BENCH_SIZES,
  parseSize,
} from './bench.js';
export { type C10dBackend, C10dCommunicator, type C10dOptions, c10dAddonPath, c10dBackends } from './c10d.js';
export {
  AllReduceError,
  type CommBuffer,
  type Communicator,
  type DeviceBuffer,
  dieWithParent,
  type FromEnvOptions,
  formatCoreList,
  type GroupOptions,
  getAffinity,
  groupNameFromJobId,
  isDeviceBuffer,
  type JoinOptions,
  joinGroup,
  joinGroupFromEnv,
  parseCoreList,
  type ReduceOp,
  ShmCommunicator,
  setAffinity,
  shardRange,
  shmPathFor,
  type Transport,
} from './group.js';
export {
  HierarchicalCommunicator,
  type HierarchicalLayout,
  joinHierarchicalFromEnv,
} from './hierarchical.js';
export {
  assignCores,
  type DeviceSpec,
  type LaunchedRanks,
  type LaunchOptions,
  type LaunchResult,
  launchMain,
  launchRanks,
  type RankExit,
  type RankProcess,
} from './launch.js';
export { addonPath, packageRoot, rankExecPath } from './native.js';
export { cudaTestHelpers, NcclCommunicator, type NcclOptions, ncclAvailable } from './nccl.js';
