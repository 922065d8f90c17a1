/** Builds safetensors bytes by hand, so tests can state exactly which rule a file breaks. */
export function craft(header: string | object | Uint8Array, data: number | Uint8Array = 0, declaredLength?: bigint): Uint8Array {
  const text =
    header instanceof Uint8Array ? header : new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + text.byteLength + body.byteLength);
  new DataView(out.buffer).setBigUint64(0, declaredLength ?? BigInt(text.byteLength), true);
  out.set(text, 8);
  out.set(body, 8 + text.byteLength);
  return out;
}

/** A header entry. */
export function entry(dtype: string, shape: unknown[], offsets: unknown[]): object {
  return { dtype, shape, data_offsets: offsets };
}
