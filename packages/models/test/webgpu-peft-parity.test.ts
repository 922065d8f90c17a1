/** PEFT DoRA model fixtures on WebGPU within the project's GPU bound of 1e-4 (see peft-fixture-parity.ts). */
import type { WebGpuBackend } from '@dorajs/backend-webgpu';
import { describePeftFixtureParity } from './peft-fixture-parity.js';
import { useWebGpu } from './webgpu.js';

const gpu = useWebGpu();
describePeftFixtureParity('WebGPU', { backend: gpu, live: (b) => (b as WebGpuBackend).liveBuffers(), tol: 1e-4 });
