/**
 * Math functions WGSL lacks or leaves imprecise: erf (GELU), an overflow-safe tanh and sigmoid, and pow
 * with PyTorch's semantics for negative bases and integer exponents.
 */
import { SPECIAL_FLOATS } from './common.js';

export const MATH_HELPERS = /* wgsl */ `${SPECIAL_FLOATS}
fn sigmoid_f(x: f32) -> f32 {
  // exp of a large positive argument overflows; evaluate on the side where it cannot.
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}
fn tanh_f(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}
fn erf_f(x: f32) -> f32 {
  // Abramowitz & Stegun 7.1.26 refined (max abs error 1.2e-7 over the real line).
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let y = 1.0 - t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(-y, y, x >= 0.0);
}
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
// WGSL's max/min leave NaN operands unspecified; PyTorch propagates them.
fn max_nan(x: f32, y: f32) -> f32 { return select(select(max(x, y), y, is_nan(y)), x, is_nan(x)); }
fn min_nan(x: f32, y: f32) -> f32 { return select(select(min(x, y), y, is_nan(y)), x, is_nan(x)); }
fn gelu_erf(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_f(x * 0.7071067811865476)); }
fn gelu_tanh(x: f32) -> f32 {
  return 0.5 * x * (1.0 + tanh_f(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}
fn pow_f(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  // WGSL leaves pow(0, b) undefined; PyTorch gives 0 for b > 0 and +inf for b < 0.
  if (a == 0.0) { return select(f32_pos_inf(), 0.0, b > 0.0); }
  let mag = pow(abs(a), b);
  if (a > 0.0) { return mag; }
  if (b != floor(b)) { return f32_nan(); }
  let odd = (i32(b) & 1) == 1;
  return select(mag, -mag, odd);
}
`;
