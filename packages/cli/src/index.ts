export { main, type Command, type CommandContext, type Io } from './main.js';
export { UsageError, InputFileError } from './errors.js';
export { readIdsFile } from './ids.js';
export { loadMnistDigits } from './mnist-data.js';
