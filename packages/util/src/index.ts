// @mpo/util: small helpers with no dependencies, used by packages and apps alike. See README.md.
export { errorMessage } from './errors.js';
export { writeFileWhole } from './files.js';
export { isObject } from './objects.js';
export { mulberry32 } from './random.js';
