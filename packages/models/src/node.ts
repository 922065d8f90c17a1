/** Node-only entry (`@dorajs/models/node`): saving model folders to disk (loadModel is also in the default entry). */
export { loadModel, type CheckpointInfo, type CheckpointTensor, type LoadedModel, type LoadModelOptions } from './io/load-model.js';
export { checkModelOutput, saveModel, type SaveModelOptions } from './io/save-model.js';
export {
  COMPANION_FILES,
  CONFIG_FILE,
  WEIGHTS_FILE,
  WEIGHTS_INDEX_FILE,
  type ModelConfigFile,
  type WeightsLayout,
} from './io/model-folder.js';
export { CHAT_TEMPLATE_FILE, loadTokenizer, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE } from './tokenizer/load-tokenizer.js';
export { loadGenerationConfig } from './generation/load-generation-config.js';
export { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, checkAdapter, describeAdapter } from './adapter/read-adapter.js';
