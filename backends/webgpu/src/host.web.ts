/** Browsers' side of the `#host` import: no environment variables and no Dawn (WebGPU is `navigator.gpu`). */
import type { DawnModule } from './host.js';

export type { DawnModule };

export function hostEnv(_name: string): string | undefined {
  return undefined;
}

export const loadDawn: (() => Promise<DawnModule>) | null = null;
