export { main, type Command, type CommandContext, type Io } from './main.js';
export { UsageError, InputFileError } from './errors.js';
export { IdsJsonReader, MAX_IDS, parseIdsJson, readIdsFile } from './ids.js';
export { loadMnistDigits } from './mnist-data.js';
