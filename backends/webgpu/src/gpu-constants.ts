/**
 * WebGPU's numeric flag values, spelled out because Node (Dawn) does not define the `GPUBufferUsage`,
 * `GPUMapMode` and `GPUShaderStage` globals unless its `globals` are installed, which a library must not do.
 */
export const BufferUsage = {
  MAP_READ: 0x0001,
  MAP_WRITE: 0x0002,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  UNIFORM: 0x0040,
  STORAGE: 0x0080,
} as const;

export const MapModeRead = 0x0001;
export const ShaderStageCompute = 0x4;
