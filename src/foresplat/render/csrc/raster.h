// Core of the tiled CPU rasterizer (no PyTorch dependency; see rasterize.cpp for the semantics).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__FMA__) && defined(__AVX__)
#include <immintrin.h>
#endif

namespace foresplat_raster {

constexpr int TILE = 16;
constexpr int TPIX = TILE * TILE;
constexpr int NGRAD = 10;  // mx, my, ca, cb, cc, opacity, r, g, b, depth

template <typename T>
struct K {
  static constexpr T alpha_max = T(0.99);
  static constexpr T alpha_min = T(1.0 / 255.0);
  static constexpr T t_min = T(1e-4);
};

// Explicit SIMD through GCC/Clang vector extensions: 32-byte vectors (8 floats / 4 doubles) with AVX,
// 16-byte ones otherwise. The 16 pixels of a tile row are NV = 16 / L vectors of L lanes.
#if defined(__AVX__)
constexpr int VBYTES = 32;  // AVX: 8 floats / 4 doubles per vector
#else
constexpr int VBYTES = 16;  // SSE2 / NEON: 4 floats / 2 doubles per vector
#endif

template <typename T>
struct Vec {
  static constexpr int L = VBYTES / sizeof(T);
  static constexpr int NV = TILE / L;
  typedef T V __attribute__((vector_size(VBYTES)));
  using M = decltype(V{} < V{});  // lane mask: same-width integers, all ones = true
  static V splat(T v) { return V{} + v; }
  static M msplat(int64_t v) { return M{} + static_cast<decltype(M{}[0])>(v); }
  static T hsum(V v) {  // fixed order (halves first): deterministic
    typedef T H __attribute__((vector_size(VBYTES / 2)));
    H lo, hi;
    std::memcpy(&lo, &v, sizeof(H));
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof(H), sizeof(H));
    const H h = lo + hi;
    T s = T(0);
    for (int i = 0; i < L / 2; ++i) s += h[i];
    return s;
  }
};

// a * b + c lane-wise: one fused multiply-add where the target has FMA (explicit, so that it does not
// depend on the compiler's contraction choices; the build uses -ffp-contract=off), else mul + add.
template <typename V>
inline V madd(V a, V b, V c) { return a * b + c; }
#if defined(__FMA__) && defined(__AVX__)
template <>
inline Vec<float>::V madd(Vec<float>::V a, Vec<float>::V b, Vec<float>::V c) {
  return (Vec<float>::V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
}
template <>
inline Vec<double>::V madd(Vec<double>::V a, Vec<double>::V b, Vec<double>::V c) {
  return (Vec<double>::V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
}
#endif

// exp(x) lane-wise for x <= 0, with x clamped to [-30, 0]: exp(-30) ~ 1e-13 is far below the 1/255
// alpha threshold, and the clamp keeps opacity * exp(x) out of the (very slow) denormal range.
// float: Cody-Waite range reduction + degree-5 minimax polynomial (relative error ~2e-7 overall, a
// few float32 ulps); double: std::exp per lane (the float64 path is for tests, not speed).
inline Vec<float>::V exp_neg(Vec<float>::V x) {
  using VF = Vec<float>;
  typedef int32_t VI __attribute__((vector_size(VBYTES)));
  x = x < VF::splat(-30.0f) ? VF::splat(-30.0f) : x;
  x = x > VF::splat(0.0f) ? VF::splat(0.0f) : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23: (t + magic) - magic rounds to nearest
  const VF::V n = madd(x, VF::splat(1.44269504088896341f), VF::splat(magic)) - magic;
  VF::V r = madd(n, VF::splat(-0.693145751953125f), x);  // ln2 split in two parts (Cody-Waite)
  r = madd(n, VF::splat(-1.428606765330187e-06f), r);
  // minimax (relative error) polynomial for exp on [-ln2/2, ln2/2], degree 5: 7.5e-8
  VF::V p = VF::splat(8.297654957e-03f);
  p = madd(p, r, VF::splat(4.191538199e-02f));
  p = madd(p, r, VF::splat(1.666757473e-01f));
  p = madd(p, r, VF::splat(4.999889485e-01f));
  p = madd(p, r, VF::splat(9.999996920e-01f));
  p = madd(p, r, VF::splat(1.000000072e+00f));
  VI bits = (__builtin_convertvector(n, VI) + 127) << 23;
  VF::V scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline Vec<double>::V exp_neg(Vec<double>::V x) {
  Vec<double>::V out;
  for (int i = 0; i < Vec<double>::L; ++i)
    out[i] = std::exp(x[i] < -30.0 ? -30.0 : (x[i] > 0.0 ? 0.0 : x[i]));
  return out;
}

struct Binning {
  std::vector<int32_t> offsets;  // [C*TH*TW + 1]
  std::vector<int32_t> ids;      // c*N + g, depth sorted per tile
};

// Stable sort of Gaussian indices by depth (ties keep index order). Visible depths are positive, so
// their IEEE bit patterns order like the values: LSD radix sort, 4 passes of 8 bits.
template <typename T>
void sort_by_depth(std::vector<int32_t>& idx, const T* z) {
  if (sizeof(T) != sizeof(float)) {  // float64: keep exact comparisons (test path, not speed)
    std::stable_sort(idx.begin(), idx.end(), [z](int32_t a, int32_t b) { return z[a] < z[b]; });
    return;
  }
  const size_t n = idx.size();
  std::vector<uint32_t> key(n), key2(n);
  std::vector<int32_t> idx2(n);
  for (size_t i = 0; i < n; ++i) {
    const float f = static_cast<float>(z[idx[i]]);
    std::memcpy(&key[i], &f, sizeof(float));
  }
  for (int shift = 0; shift < 32; shift += 8) {
    size_t count[257] = {0};
    for (size_t i = 0; i < n; ++i) ++count[((key[i] >> shift) & 255u) + 1];
    for (int b = 0; b < 256; ++b) count[b + 1] += count[b];
    for (size_t i = 0; i < n; ++i) {
      const size_t dst = count[(key[i] >> shift) & 255u]++;
      key2[dst] = key[i];
      idx2[dst] = idx[i];
    }
    key.swap(key2);
    idx.swap(idx2);
  }
}

// Per-tile lists of the visible Gaussians (radii > 0), each in depth order: a Gaussian goes into every
// tile its box [m - r, m + r] touches. Serial: cheap next to compositing (O(N log N + entries)).
template <typename T>
Binning bin_gaussians(const T* means2d, const T* depths, const int32_t* radii, int C, int N, int TW,
                      int TH) {
  const int ntiles = TW * TH;
  Binning b;
  b.offsets.assign(static_cast<size_t>(C) * ntiles + 1, 0);
  std::vector<std::vector<int32_t>> order(C);  // visible Gaussians of each camera, depth sorted
  std::vector<std::vector<int32_t>> rects(C);  // their tile rectangles x0, x1, y0, y1
  auto clamp_to = [](T v, int hi) { return static_cast<int32_t>(std::min(std::max(v, T(0)), T(hi))); };
  for (int64_t c = 0; c < C; ++c) {
    const T* z = depths + c * N;
    const int32_t* rad = radii + c * N * 2;
    std::vector<int32_t>& vis = order[c];
    for (int g = 0; g < N; ++g)
      if (rad[2 * g] > 0 && rad[2 * g + 1] > 0) vis.push_back(g);
    sort_by_depth(vis, z);
    std::vector<int32_t>& rc = rects[c];
    rc.resize(vis.size() * 4);
    int32_t* counts = b.offsets.data() + c * ntiles + 1;  // tile counts, prefix-summed below
    for (size_t i = 0; i < vis.size(); ++i) {
      const int g = vis[i];
      const T* m = means2d + (c * N + g) * 2;
      const T rx = T(rad[2 * g]), ry = T(rad[2 * g + 1]);
      const int32_t x0 = clamp_to(std::floor((m[0] - rx) / TILE), TW);
      const int32_t x1 = clamp_to(std::ceil((m[0] + rx) / TILE), TW);
      const int32_t y0 = clamp_to(std::floor((m[1] - ry) / TILE), TH);
      const int32_t y1 = clamp_to(std::ceil((m[1] + ry) / TILE), TH);
      rc[4 * i] = x0; rc[4 * i + 1] = x1; rc[4 * i + 2] = y0; rc[4 * i + 3] = y1;
      for (int ty = y0; ty < y1; ++ty)
        for (int tx = x0; tx < x1; ++tx) counts[ty * TW + tx] += 1;
    }
  }
  for (size_t t = 1; t < b.offsets.size(); ++t) b.offsets[t] += b.offsets[t - 1];
  b.ids.resize(b.offsets.back());
  for (int64_t c = 0; c < C; ++c) {
    std::vector<int32_t> fill(b.offsets.begin() + c * ntiles, b.offsets.begin() + (c + 1) * ntiles);
    const std::vector<int32_t>& vis = order[c];
    const std::vector<int32_t>& rc = rects[c];
    for (size_t i = 0; i < vis.size(); ++i)
      for (int ty = rc[4 * i + 2]; ty < rc[4 * i + 3]; ++ty)
        for (int tx = rc[4 * i]; tx < rc[4 * i + 1]; ++tx)
          b.ids[fill[ty * TW + tx]++] = static_cast<int32_t>(c * N + vis[i]);
  }
  return b;
}

// Rows [r0, r1) of the tile that the box of Gaussian (my, ry) can touch (pixel centres at +0.5).
template <typename T>
inline void row_range(T my, T ry, int tile_y0, int& r0, int& r1) {
  const T lo = std::ceil(my - ry - T(0.5)) - T(tile_y0);
  const T hi = std::floor(my + ry - T(0.5)) - T(tile_y0) + T(1);
  r0 = static_cast<int>(std::max(T(0), std::min(T(TILE), lo)));
  r1 = static_cast<int>(std::max(T(0), std::min(T(TILE), hi)));
}

// power and exp(-power) of one row vector of pixels: the SAME code in forward and backward, so both
// passes make identical skip / stop decisions.
template <typename T>
inline void gauss_power(const typename Vec<T>::V& dx, T ca, T cb, T cc, T dy, typename Vec<T>::V& power,
                        typename Vec<T>::V& ex) {
  using VT = Vec<T>;
  const typename VT::V t = madd(VT::splat(ca) * dx, dx, VT::splat(cc * dy * dy));  // a dx^2 + c dy^2
  power = madd(VT::splat(T(0.5)), t, VT::splat(cb * dy) * dx);
  ex = exp_neg(-power);
}

// Columns of one tile row where Gaussian (conic a, b, c; opacity o) can reach alpha >= 1/255:
// power(dx) = 0.5 a dx^2 + b dx dy + 0.5 c dy^2 <= tau = ln(255 o) (+ a small margin, so that the
// test is conservative under rounding). Returns false if the row is missed entirely, else the
// pixel-centre interval [xlo, xhi]. Skipping lanes outside it changes no result: their alpha would
// be below 1/255 and they would be skipped anyway.
template <typename T>
inline bool row_span(T ca, T inv_ca, T cb, T cc, T tau, T mx, T dy, T& xlo, T& xhi) {
  const T disc = (cb * cb - ca * cc) * dy * dy + T(2) * ca * tau;
  if (!(disc >= T(0))) return false;
  const T sq = std::sqrt(disc);
  xlo = mx + (-cb * dy - sq) * inv_ca - T(0.01);
  xhi = mx + (-cb * dy + sq) * inv_ca + T(0.01);
  return true;
}

template <typename T>
void forward_tile(int tile, int TW, int TH, int W, int H, int N, const Binning& bin, const T* means2d,
                  const T* conics, const T* colors, const T* opac, const T* depths, const int32_t* radii,
                  const T* bg, T* out_rgb, T* out_alpha, T* out_depth, T* out_t, int32_t* out_last) {
  using VT = Vec<T>;
  using V = typename VT::V;
  using M = typename VT::M;
  constexpr int L = VT::L, NV = VT::NV, NVEC = TILE * NV;
  const int c = tile / (TW * TH);
  const int tid = tile % (TW * TH);
  const int tx0 = (tid % TW) * TILE, ty0 = (tid / TW) * TILE;
  const int start = bin.offsets[tile], end = bin.offsets[tile + 1];
  V tr[NVEC], ar[NVEC], ag[NVEC], ab[NVEC], az[NVEC], px[NV];
  M last[NVEC], done[NVEC];
  for (int j = 0; j < NV; ++j)
    for (int i = 0; i < L; ++i) px[j][i] = T(tx0 + j * L + i) + T(0.5);
  int n_live_rows = 0;
  bool row_live[TILE], vec_live[NVEC];  // some pixel of the row / vector still composites
  for (int row = 0; row < TILE; ++row) {
    row_live[row] = false;
    for (int j = 0; j < NV; ++j) {
      const int v = row * NV + j;
      tr[v] = VT::splat(T(1));
      ar[v] = ag[v] = ab[v] = az[v] = V{};
      last[v] = M{};
      vec_live[v] = false;
      for (int i = 0; i < L; ++i) {
        const bool outside = tx0 + j * L + i >= W || ty0 + row >= H;
        done[v][i] = outside ? -1 : 0;
        vec_live[v] = vec_live[v] || !outside;
      }
      row_live[row] = row_live[row] || vec_live[v];
    }
    n_live_rows += row_live[row];
  }
  const V amax = VT::splat(K<T>::alpha_max), amin = VT::splat(K<T>::alpha_min);
  const V tmin = VT::splat(K<T>::t_min), zero = V{}, one = VT::splat(T(1));
  for (int k = start; k < end && n_live_rows > 0; ++k) {
    if (((k - start) & 15) == 15) {  // every 16 Gaussians: retire vectors / rows whose pixels all stopped
      for (int row = 0; row < TILE; ++row) {
        if (!row_live[row]) continue;
        bool live_row = false;
        for (int j = 0; j < NV; ++j) {
          const int v = row * NV + j;
          bool live = false;
          for (int i = 0; i < L; ++i) live = live || !done[v][i];
          vec_live[v] = live;
          live_row = live_row || live;
        }
        if (!live_row) { row_live[row] = false; --n_live_rows; }
      }
    }
    const int gi = bin.ids[k];  // c*N + g
    const int g = gi - c * N;
    const T mx = means2d[2 * gi], my = means2d[2 * gi + 1];
    const T ca = conics[3 * gi], cb = conics[3 * gi + 1], cc = conics[3 * gi + 2];
    const T o = opac[g], cr = colors[3 * gi], cg = colors[3 * gi + 1], cbl = colors[3 * gi + 2];
    const T z = depths[gi];
    const M kk = VT::msplat(k - start + 1);
    const T tau = std::log(T(255) * o) + T(1e-3), inv_ca = T(1) / ca;
    int r0, r1;
    row_range<T>(my, T(radii[2 * gi + 1]), ty0, r0, r1);
    for (int row = r0; row < r1; ++row) {
      if (!row_live[row]) continue;
      const T dy = T(ty0 + row) + T(0.5) - my;
      T xlo, xhi;
      if (!row_span(ca, inv_ca, cb, cc, tau, mx, dy, xlo, xhi)) continue;
      for (int j = 0; j < NV; ++j) {
        const int v = row * NV + j;
        if (!vec_live[v] || xhi < px[j][0] || xlo > px[j][L - 1]) continue;
        const V dx = px[j] - mx;
        V power, ex;
        gauss_power<T>(dx, ca, cb, cc, dy, power, ex);
        V a = o * ex;
        a = a > amax ? amax : a;
        const M ok = (power >= zero) & (a >= amin) & ~done[v];
        const V tcur = tr[v];
        const V tnext = tcur * (one - a);
        const M stop = ok & (tnext < tmin);
        const M add = ok & ~stop;
        const V w = add ? a * tcur : zero;
        ar[v] = madd(w, VT::splat(cr), ar[v]);
        ag[v] = madd(w, VT::splat(cg), ag[v]);
        ab[v] = madd(w, VT::splat(cbl), ab[v]);
        az[v] = madd(w, VT::splat(z), az[v]);
        tr[v] = add ? tnext : tcur;
        last[v] = add ? kk : last[v];
        done[v] |= stop;
      }
    }
  }
  for (int row = 0; row < TILE; ++row) {
    const int y = ty0 + row;
    if (y >= H) break;
    for (int j = 0; j < NV; ++j)
      for (int i = 0; i < L; ++i) {
        const int x = tx0 + j * L + i;
        if (x >= W) continue;
        const int v = row * NV + j;
        const int64_t pix = (static_cast<int64_t>(c) * H + y) * W + x;
        const T t_f = tr[v][i], alpha = T(1) - t_f;
        const T* b = bg ? bg + 3 * c : nullptr;
        out_rgb[3 * pix] = ar[v][i] + (b ? t_f * b[0] : T(0));
        out_rgb[3 * pix + 1] = ag[v][i] + (b ? t_f * b[1] : T(0));
        out_rgb[3 * pix + 2] = ab[v][i] + (b ? t_f * b[2] : T(0));
        out_alpha[pix] = alpha;
        out_depth[pix] = alpha > T(0) ? az[v][i] / alpha : T(0);  // expected depth sum(w z) / alpha
        out_t[pix] = t_f;
        out_last[pix] = static_cast<int32_t>(last[v][i]);
      }
  }
}

template <typename T>
void backward_tile(int tile, int TW, int TH, int W, int H, int N, const int32_t* offsets,
                   const int32_t* ids, const T* means2d, const T* conics, const T* colors, const T* opac,
                   const T* depths, const int32_t* radii, const T* t_final, const int32_t* last_in,
                   const T* out_depth, const T* bg, const T* g_rgb, const T* g_alpha, const T* g_depth,
                   T* buf) {
  using VT = Vec<T>;
  using V = typename VT::V;
  using M = typename VT::M;
  constexpr int L = VT::L, NV = VT::NV, NVEC = TILE * NV;
  const int c = tile / (TW * TH);
  const int tid = tile % (TW * TH);
  const int tx0 = (tid % TW) * TILE, ty0 = (tid / TW) * TILE;
  const int start = offsets[tile], end = offsets[tile + 1];
  V tr[NVEC], behind[NVEC], gr[NVEC], gg[NVEC], gb[NVEC], gz[NVEC], px[NV];
  M last[NVEC];
  int max_last = 0, row_last[TILE], vec_last[NVEC];  // max of `last` over a row / vector
  for (int j = 0; j < NV; ++j)
    for (int i = 0; i < L; ++i) px[j][i] = T(tx0 + j * L + i) + T(0.5);
  for (int row = 0; row < TILE; ++row) {
    row_last[row] = 0;
    for (int j = 0; j < NV; ++j) {
      const int v = row * NV + j;
      vec_last[v] = 0;
      for (int i = 0; i < L; ++i) {
        const int x = tx0 + j * L + i, y = ty0 + row;
        if (x >= W || y >= H) {
          tr[v][i] = T(1); gr[v][i] = gg[v][i] = gb[v][i] = gz[v][i] = behind[v][i] = T(0); last[v][i] = 0;
          continue;
        }
        const int64_t pix = (static_cast<int64_t>(c) * H + y) * W + x;
        // outputs -> (sum w c, T_final, sum w z): colour = sum w c + T bg, alpha = 1 - T,
        // depth = sum w z / alpha (0 where alpha = 0)
        const T t_f = t_final[pix], alpha = T(1) - t_f;
        const T gcr = g_rgb[3 * pix], gcg = g_rgb[3 * pix + 1], gcb = g_rgb[3 * pix + 2];
        T g_t = -g_alpha[pix];
        if (bg) g_t += gcr * bg[3 * c] + gcg * bg[3 * c + 1] + gcb * bg[3 * c + 2];
        T g_wz = T(0);
        if (alpha > T(0)) {
          g_wz = g_depth[pix] / alpha;
          g_t += g_depth[pix] * out_depth[pix] / alpha;
        }
        tr[v][i] = t_f;
        gr[v][i] = gcr; gg[v][i] = gcg; gb[v][i] = gcb;
        gz[v][i] = g_wz;
        behind[v][i] = g_t * t_f;  // dL/dT_final * T_final, enters every dL/dalpha_i
        last[v][i] = last_in[pix];
        vec_last[v] = std::max(vec_last[v], last_in[pix]);
        row_last[row] = std::max(row_last[row], last_in[pix]);
      }
    }
    max_last = std::max(max_last, row_last[row]);
  }
  for (int k = start + max_last; k < end; ++k)  // entries no pixel reached: zero gradient
    for (int q = 0; q < NGRAD; ++q) buf[static_cast<int64_t>(k) * NGRAD + q] = T(0);
  const V amax = VT::splat(K<T>::alpha_max), amin = VT::splat(K<T>::alpha_min), zero = V{};
  const V one = VT::splat(T(1));
  for (int k = start + max_last - 1; k >= start; --k) {
    const int gi = ids[k];
    const int g = gi - c * N;
    const T mx = means2d[2 * gi], my = means2d[2 * gi + 1];
    const T ca = conics[3 * gi], cb = conics[3 * gi + 1], cc = conics[3 * gi + 2];
    const T o = opac[g], cr = colors[3 * gi], cg = colors[3 * gi + 1], cbl = colors[3 * gi + 2];
    const T z = depths[gi];
    const int kk = k - start;  // contributes to pixel p only if kk < last[p]
    const M kkv = VT::msplat(kk);
    // dL/dpower = ds per pixel; the conic / mean gradients need its moments over the Gaussian's
    // pixels: sum ds dx, sum ds dy, sum ds dx^2, sum ds dx dy, sum ds dy^2 (dy is constant per row)
    V m_dx{}, m_dy{}, m_dxdx{}, m_dxdy{}, m_dydy{}, d_o{}, d_r{}, d_g{}, d_bl{}, d_z{};
    const T tau = std::log(T(255) * o) + T(1e-3), inv_ca = T(1) / ca;
    const V cr_v = VT::splat(cr), cg_v = VT::splat(cg), cb_v = VT::splat(cbl), z_v = VT::splat(z);
    int r0, r1;
    row_range<T>(my, T(radii[2 * gi + 1]), ty0, r0, r1);
    for (int row = r0; row < r1; ++row) {
      if (kk >= row_last[row]) continue;
      const T dy = T(ty0 + row) + T(0.5) - my;
      T xlo, xhi;
      if (!row_span(ca, inv_ca, cb, cc, tau, mx, dy, xlo, xhi)) continue;
      const V dy_v = VT::splat(dy);
      V s_row{};  // sum of ds over this row
      for (int j = 0; j < NV; ++j) {
        const int v = row * NV + j;
        if (kk >= vec_last[v] || xhi < px[j][0] || xlo > px[j][L - 1]) continue;
        const V dx = px[j] - mx;
        V power, ex;
        gauss_power<T>(dx, ca, cb, cc, dy, power, ex);
        const V raw = o * ex;
        const V a = raw > amax ? amax : raw;
        const M ok = (power >= zero) & (a >= amin) & (kkv < last[v]);
        const V inv_one_m = one / (one - a);
        const V t_i = tr[v] * inv_one_m;  // transmittance in front of this Gaussian
        const V w = ok ? a * t_i : zero;
        const V val = madd(gz[v], z_v, madd(gb[v], cb_v, madd(gg[v], cg_v, gr[v] * cr_v)));
        // dL/dalpha = T_i val - (sum over the Gaussians behind + dL/dT_final T_final) / (1 - alpha)
        const V d_alpha = t_i * val - behind[v] * inv_one_m;
        d_r = madd(w, gr[v], d_r);
        d_g = madd(w, gg[v], d_g);
        d_bl = madd(w, gb[v], d_bl);
        d_z = madd(w, gz[v], d_z);
        behind[v] = madd(w, val, behind[v]);
        tr[v] = ok ? t_i : tr[v];
        const V da = (ok & (raw <= amax)) ? d_alpha : zero;  // clamped alpha: no gradient
        d_o = madd(ex, da, d_o);
        const V ds = -a * da;  // dL/dpower
        const V dsdx = ds * dx;
        s_row += ds;
        m_dx += dsdx;
        m_dxdx = madd(dsdx, dx, m_dxdx);
        m_dxdy = madd(dsdx, dy_v, m_dxdy);
      }
      m_dy = madd(s_row, dy_v, m_dy);
      m_dydy = madd(s_row, VT::splat(dy * dy), m_dydy);
    }
    // power = 0.5 (a dx^2 + c dy^2) + b dx dy with dx = px - mx, dy = py - my
    const T s_dx = VT::hsum(m_dx), s_dy = VT::hsum(m_dy);
    T* out = buf + static_cast<int64_t>(k) * NGRAD;
    out[0] = -(ca * s_dx + cb * s_dy);
    out[1] = -(cb * s_dx + cc * s_dy);
    out[2] = T(0.5) * VT::hsum(m_dxdx);
    out[3] = VT::hsum(m_dxdy);
    out[4] = T(0.5) * VT::hsum(m_dydy);
    out[5] = VT::hsum(d_o);
    out[6] = VT::hsum(d_r);
    out[7] = VT::hsum(d_g);
    out[8] = VT::hsum(d_bl);
    out[9] = VT::hsum(d_z);
  }
}

template <typename T>
void run_forward(const Binning& bin, int TW, int TH, int W, int H, int C, int N, const T* m, const T* co,
                 const T* cl, const T* op, const T* dp, const int32_t* rd, const T* bg, T* o_rgb,
                 T* o_alpha, T* o_depth, T* o_t, int32_t* o_last, int nthreads) {
  const int ntiles = C * TW * TH;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int t = 0; t < ntiles; ++t)
    forward_tile<T>(t, TW, TH, W, H, N, bin, m, co, cl, op, dp, rd, bg, o_rgb, o_alpha, o_depth, o_t, o_last);
}

template <typename T>
void run_backward(int TW, int TH, int W, int H, int C, int N, int64_t nisect, const int32_t* off,
                  const int32_t* id, const T* m, const T* co, const T* cl, const T* op, const T* dp,
                  const int32_t* rd, const T* tf, const int32_t* ls, const T* o_depth, const T* bg,
                  const T* g_rgb, const T* g_alpha, const T* g_depth, T* b, T* gm, T* gc, T* gcl, T* go,
                  T* gd, T* g_bg, int nthreads) {
  const int ntiles = C * TW * TH;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int t = 0; t < ntiles; ++t)
    backward_tile<T>(t, TW, TH, W, H, N, off, id, m, co, cl, op, dp, rd, tf, ls, o_depth, bg, g_rgb, g_alpha,
                     g_depth, b);
  // deterministic reductions: serial, in list / pixel order
  for (int64_t k = 0; k < nisect; ++k) {
    const int64_t gi = id[k];
    const T* s = b + k * NGRAD;
    gm[2 * gi] += s[0]; gm[2 * gi + 1] += s[1];
    gc[3 * gi] += s[2]; gc[3 * gi + 1] += s[3]; gc[3 * gi + 2] += s[4];
    go[gi % N] += s[5];
    gcl[3 * gi] += s[6]; gcl[3 * gi + 1] += s[7]; gcl[3 * gi + 2] += s[8];
    gd[gi] += s[9];
  }
  if (g_bg)
    for (int c = 0; c < C; ++c)
      for (int64_t p = 0; p < int64_t(H) * W; ++p) {
        const int64_t pix = int64_t(c) * H * W + p;
        for (int ch = 0; ch < 3; ++ch) g_bg[3 * c + ch] += g_rgb[3 * pix + ch] * tf[pix];
      }
}

}  // namespace foresplat_raster
