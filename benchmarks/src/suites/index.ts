// One line per suite, each a default-exported BenchSuite; `pnpm bench` runs them sorted by suite name.
export { default as consumerInstall } from './consumer-install.js';
export { default as bundleSize } from './bundle-size.js';
export { default as safetensorsIo } from './safetensors-io.js';
export { default as cpuPeers } from './cpu-peers.js';
export { default as webgpuKernels } from './webgpu-kernels.js';
export { default as narrowWebgpu } from './narrow-webgpu.js';
export { default as cpuMatmul } from './cpu-matmul.js';
export { default as cpuKernels } from './cpu-kernels.js';
export { default as cpuSpeed } from './cpu-speed.js';
export { default as modelLoad } from './model-load.js';
export { default as llm } from './llm.js';
export { default as trainMnist } from './train-mnist.js';
export { default as trainStep } from './train-step.js';
export { default as trainWebgpu } from './train-webgpu.js';
export { default as narrow } from './narrow.js';
export { default as webLoad } from './web-load.js';
export { default as qdora } from './qdora.js';
