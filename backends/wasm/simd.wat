;; Per-element passes of our norm and Adam kernels in WebAssembly SIMD, run on the wasm backend's
;; own memory (imported), so they read and write its tensors in place. `backends/simd.ts` loads
;; this (assembled into `simd_wasm.ts` by `deno task build:simd`) and hands them what it covers:
;; NHWC blocks whose channel count is a multiple of 4, the first multiple-of-4 elements for Adam.
;; Pointers and row lengths are in bytes.
(module
  (import "env" "memory" (memory 1))

  ;; Per channel over `hw` pixels of `c` channels: sa[ch] = sum a, sab[ch] = sum a * b, summed in
  ;; doubles in pixel order (as the JavaScript pass does). sa, sab: f64[c].
  (func (export "channel_sums")
    (param $a i32) (param $b i32) (param $hw i32) (param $c i32) (param $sa i32) (param $sab i32)
    (local $row i32) (local $end i32) (local $g i32) (local $i i32)
    (local $s0 v128) (local $s1 v128) (local $p0 v128) (local $p1 v128)
    (local $xa v128) (local $xb v128) (local $lo v128) (local $hi v128)
    (local.set $row (i32.shl (local.get $c) (i32.const 2)))
    (local.set $end (i32.mul (local.get $row) (local.get $hw)))
    (local.set $g (i32.const 0))
    (block $done
      (loop $groups ;; four channels at a time, their sums in registers
        (br_if $done (i32.ge_u (local.get $g) (local.get $row)))
        (local.set $s0 (v128.const i64x2 0 0))
        (local.set $s1 (v128.const i64x2 0 0))
        (local.set $p0 (v128.const i64x2 0 0))
        (local.set $p1 (v128.const i64x2 0 0))
        (local.set $i (local.get $g))
        (block $empty
          (br_if $empty (i32.ge_u (local.get $i) (local.get $end)))
          (loop $pixels
            (local.set $xa (v128.load (i32.add (local.get $a) (local.get $i))))
            (local.set $xb (v128.load (i32.add (local.get $b) (local.get $i))))
            ;; channels 0 and 1 of the group
            (local.set $lo (f64x2.promote_low_f32x4 (local.get $xa)))
            (local.set $s0 (f64x2.add (local.get $s0) (local.get $lo)))
            (local.set $p0 (f64x2.add (local.get $p0)
              (f64x2.mul (local.get $lo) (f64x2.promote_low_f32x4 (local.get $xb)))))
            ;; channels 2 and 3, moved down first
            (local.set $hi (f64x2.promote_low_f32x4
              (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $xa) (local.get $xa))))
            (local.set $s1 (f64x2.add (local.get $s1) (local.get $hi)))
            (local.set $p1 (f64x2.add (local.get $p1)
              (f64x2.mul (local.get $hi) (f64x2.promote_low_f32x4
                (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $xb) (local.get $xb))))))
            (local.set $i (i32.add (local.get $i) (local.get $row)))
            (br_if $pixels (i32.lt_u (local.get $i) (local.get $end)))))
        ;; channel k's doubles sit at 8k bytes: twice the group's float offset
        (v128.store (i32.add (local.get $sa) (i32.shl (local.get $g) (i32.const 1))) (local.get $s0))
        (v128.store offset=16 (i32.add (local.get $sa) (i32.shl (local.get $g) (i32.const 1)))
          (local.get $s1))
        (v128.store (i32.add (local.get $sab) (i32.shl (local.get $g) (i32.const 1))) (local.get $p0))
        (v128.store offset=16 (i32.add (local.get $sab) (i32.shl (local.get $g) (i32.const 1)))
          (local.get $p1))
        (local.set $g (i32.add (local.get $g) (i32.const 16)))
        (br $groups))))

  ;; y = x * s[ch] + t[ch] over `hw` pixels of `c` channels. s, t: f32[c].
  (func (export "affine")
    (param $x i32) (param $y i32) (param $hw i32) (param $c i32) (param $s i32) (param $t i32)
    (local $row i32) (local $end i32) (local $ch i32)
    (local.set $row (i32.shl (local.get $c) (i32.const 2)))
    (local.set $end (i32.add (local.get $x) (i32.mul (local.get $row) (local.get $hw))))
    (block $done
      (loop $pixels
        (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $ch (i32.const 0))
        (loop $channels
          (v128.store (i32.add (local.get $y) (local.get $ch))
            (f32x4.add
              (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $ch)))
                (v128.load (i32.add (local.get $s) (local.get $ch))))
              (v128.load (i32.add (local.get $t) (local.get $ch)))))
          (local.set $ch (i32.add (local.get $ch) (i32.const 16)))
          (br_if $channels (i32.lt_u (local.get $ch) (local.get $row))))
        (local.set $x (i32.add (local.get $x) (local.get $row)))
        (local.set $y (i32.add (local.get $y) (local.get $row)))
        (br $pixels))))

  ;; out = a * p[ch] + b * q[ch] + r[ch] over `hw` pixels of `c` channels. p, q, r: f32[c].
  (func (export "affine2")
    (param $a i32) (param $b i32) (param $out i32) (param $hw i32) (param $c i32)
    (param $p i32) (param $q i32) (param $r i32)
    (local $row i32) (local $end i32) (local $ch i32)
    (local.set $row (i32.shl (local.get $c) (i32.const 2)))
    (local.set $end (i32.add (local.get $a) (i32.mul (local.get $row) (local.get $hw))))
    (block $done
      (loop $pixels
        (br_if $done (i32.ge_u (local.get $a) (local.get $end)))
        (local.set $ch (i32.const 0))
        (loop $channels
          (v128.store (i32.add (local.get $out) (local.get $ch))
            (f32x4.add
              (f32x4.add
                (f32x4.mul (v128.load (i32.add (local.get $a) (local.get $ch)))
                  (v128.load (i32.add (local.get $p) (local.get $ch))))
                (f32x4.mul (v128.load (i32.add (local.get $b) (local.get $ch)))
                  (v128.load (i32.add (local.get $q) (local.get $ch)))))
              (v128.load (i32.add (local.get $r) (local.get $ch)))))
          (local.set $ch (i32.add (local.get $ch) (i32.const 16)))
          (br_if $channels (i32.lt_u (local.get $ch) (local.get $row))))
        (local.set $a (i32.add (local.get $a) (local.get $row)))
        (local.set $b (i32.add (local.get $b) (local.get $row)))
        (local.set $out (i32.add (local.get $out) (local.get $row)))
        (br $pixels))))

  ;; One Adam step over `bytes` bytes (a multiple of 16) of g, p, m, v, as the JavaScript
  ;; `adamUpdate` does it, in single precision: g' = g + wd p; m = b1 m + (1 - b1) g';
  ;; v = b2 v + (1 - b2) g'^2; update = step m / (sqrt(v) root + eps).
  (func (export "adam")
    (param $g i32) (param $p i32) (param $m i32) (param $v i32)
    (param $u i32) (param $mo i32) (param $vo i32) (param $bytes i32)
    (param $wd f32) (param $b1 f32) (param $c1 f32) (param $b2 f32) (param $c2 f32)
    (param $eps f32) (param $step f32) (param $root f32)
    (local $i i32) (local $gi v128) (local $mi v128) (local $vi v128)
    (local $vwd v128) (local $vb1 v128) (local $vc1 v128) (local $vb2 v128) (local $vc2 v128)
    (local $veps v128) (local $vstep v128) (local $vroot v128)
    (local.set $vwd (f32x4.splat (local.get $wd)))
    (local.set $vb1 (f32x4.splat (local.get $b1)))
    (local.set $vc1 (f32x4.splat (local.get $c1)))
    (local.set $vb2 (f32x4.splat (local.get $b2)))
    (local.set $vc2 (f32x4.splat (local.get $c2)))
    (local.set $veps (f32x4.splat (local.get $eps)))
    (local.set $vstep (f32x4.splat (local.get $step)))
    (local.set $vroot (f32x4.splat (local.get $root)))
    (block $done
      (loop $elements
        (br_if $done (i32.ge_u (local.get $i) (local.get $bytes)))
        (local.set $gi (f32x4.add (v128.load (i32.add (local.get $g) (local.get $i)))
          (f32x4.mul (local.get $vwd) (v128.load (i32.add (local.get $p) (local.get $i))))))
        (local.set $mi (f32x4.add
          (f32x4.mul (local.get $vb1) (v128.load (i32.add (local.get $m) (local.get $i))))
          (f32x4.mul (local.get $vc1) (local.get $gi))))
        (local.set $vi (f32x4.add
          (f32x4.mul (local.get $vb2) (v128.load (i32.add (local.get $v) (local.get $i))))
          (f32x4.mul (f32x4.mul (local.get $vc2) (local.get $gi)) (local.get $gi))))
        (v128.store (i32.add (local.get $mo) (local.get $i)) (local.get $mi))
        (v128.store (i32.add (local.get $vo) (local.get $i)) (local.get $vi))
        (v128.store (i32.add (local.get $u) (local.get $i))
          (f32x4.div (f32x4.mul (local.get $vstep) (local.get $mi))
            (f32x4.add (f32x4.mul (f32x4.sqrt (local.get $vi)) (local.get $vroot))
              (local.get $veps))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $elements))))
)
