/** Shape helpers for the kernels: core's, under the names and argument order the kernels use. */
import { broadcastShapes as coreBroadcastShapes, sameShape, shapeStr, sizeOf } from '@dorajs/core';

export { sameShape, sizeOf };
export const formatShape = shapeStr;

/** numpy broadcasting of two shapes; `op` names the caller in the error. */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  return coreBroadcastShapes(a, b, op);
}
