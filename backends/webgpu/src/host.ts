/**
 * What Node offers the backend (the `node` condition of the `#host` import; browsers get host.web.ts, so
 * their bundles name neither `process` nor Dawn).
 */

export interface DawnModule {
  create(flags: string[]): GPU;
}

/** An environment variable (the backend's tuning and debugging switches). */
export function hostEnv(name: string): string | undefined {
  return process.env[name];
}

/** Dawn, npm `webgpu` (an optional peer dependency): the variable specifier keeps Node bundlers from requiring it. */
export const loadDawn: (() => Promise<DawnModule>) | null = async () => {
  const specifier = 'webgpu';
  return (await import(/* @vite-ignore */ specifier)) as DawnModule;
};
