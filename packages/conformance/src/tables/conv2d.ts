/** Conv2d configurations: shapes as stored (NCHW, OIHW) and hyper-parameters, one row per feature. */
import type { Conv2dParams } from '@dorajs/core';

export interface Conv2dCase {
  readonly id: string;
  readonly title: string;
  readonly x: readonly [number, number, number, number];
  readonly w: readonly [number, number, number, number];
  readonly p: Conv2dParams;
  readonly seed: number;
}

const P = (s: [number, number], pad: [number, number], d: [number, number], groups = 1): Conv2dParams => ({
  stride: s,
  padding: pad,
  dilation: d,
  groups,
});

export const CONV2D_CASES: readonly Conv2dCase[] = [
  { id: 'basic', title: '3×3, padding 1', x: [2, 3, 5, 5], w: [4, 3, 3, 3], p: P([1, 1], [1, 1], [1, 1]), seed: 200 },
  { id: 'stride2', title: 'stride 2, padding 1, odd input', x: [1, 2, 7, 6], w: [3, 2, 3, 3], p: P([2, 2], [1, 1], [1, 1]), seed: 201 },
  { id: 'dilation2', title: 'dilation 2, padding 2', x: [1, 2, 7, 7], w: [2, 2, 3, 3], p: P([1, 1], [2, 2], [2, 2]), seed: 202 },
  { id: 'groups2', title: 'groups 2', x: [2, 4, 5, 5], w: [6, 2, 3, 3], p: P([1, 1], [1, 1], [1, 1], 2), seed: 203 },
  {
    id: 'mixed',
    title: 'groups 2, stride (2,1), padding (1,0), dilation (2,1), 3×2 kernel',
    x: [1, 4, 9, 8],
    w: [4, 2, 3, 2],
    p: P([2, 1], [1, 0], [2, 1], 2),
    seed: 204,
  },
  { id: 'pointwise', title: '1×1 kernel, stride 1, no padding', x: [2, 3, 4, 4], w: [5, 3, 1, 1], p: P([1, 1], [0, 0], [1, 1]), seed: 205 },
  {
    id: 'depthwise',
    title: 'depthwise (groups = channels), stride 2',
    x: [1, 3, 6, 6],
    w: [3, 1, 3, 3],
    p: P([2, 2], [1, 1], [1, 1], 3),
    seed: 206,
  },
];
