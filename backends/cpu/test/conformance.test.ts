import { defineBackendConformance } from '@dorajs/backend-conformance';
import { createCpuBackend } from '../src/index.js';

// The CPU backend is the reference, so its vs-reference tier compares two independent instances.
defineBackendConformance({
  name: 'cpu',
  create: () => createCpuBackend(),
  reference: () => createCpuBackend(),
});
