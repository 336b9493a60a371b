// Native EWA projection + SH colours for the cpu backend, forward and hand-written backward.
// Same maths as src/foresplat/render/projection.py and sh.py (see those docstrings); no PyTorch
// dependency. Parallel over Gaussians; the per-camera (viewmat) gradient is reduced over fixed-size
// chunks in a fixed order, so results do not depend on the number of threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace foresplat_raster {

constexpr double RADIUS_SIGMAS = 3.33;   // box half-size in std devs (visibility, as gsplat)
constexpr double ALPHA_MIN_D = 1.0 / 255.0;
constexpr int PROJ_CHUNK = 1024;          // Gaussians per chunk of the viewmat-gradient reduction

constexpr double SH_C0 = 0.28209479177387814;
constexpr double SH_C1 = 0.4886025119029199;
constexpr double SH_C2[5] = {1.0925484305920792, -1.0925484305920792, 0.31539156525252005,
                             -1.0925484305920792, 0.5462742152960396};
constexpr double SH_C3[7] = {-0.5900435899266435, 2.890611442640554, -0.4570457994644658,
                             0.3731763325901154, -0.4570457994644658, 1.445305721320277,
                             -0.5900435899266435};

template <typename T>
struct Camera {
  T R[9], t[3], fx, fy, cx, cy, campos[3], lim_xp, lim_xn, lim_yp, lim_yn;

  Camera(const T* viewmat, const T* K, int W, int H) {
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) R[3 * i + j] = viewmat[4 * i + j];
      t[i] = viewmat[4 * i + 3];
    }
    fx = K[0]; fy = K[4]; cx = K[2]; cy = K[5];
    for (int j = 0; j < 3; ++j) campos[j] = -(R[j] * t[0] + R[3 + j] * t[1] + R[6 + j] * t[2]);
    const T tan_fovx = T(0.5) * T(W) / fx, tan_fovy = T(0.5) * T(H) / fy;
    lim_xp = (T(W) - cx) / fx + T(0.3) * tan_fovx;
    lim_xn = cx / fx + T(0.3) * tan_fovx;
    lim_yp = (T(H) - cy) / fy + T(0.3) * tan_fovy;
    lim_yn = cy / fy + T(0.3) * tan_fovy;
  }
};

// Rotation matrix (row-major) of a unit quaternion (w, x, y, z).
template <typename T>
inline void quat_to_rot(const T q[4], T Rq[9]) {
  const T w = q[0], x = q[1], y = q[2], z = q[3];
  Rq[0] = 1 - 2 * (y * y + z * z); Rq[1] = 2 * (x * y - w * z); Rq[2] = 2 * (x * z + w * y);
  Rq[3] = 2 * (x * y + w * z); Rq[4] = 1 - 2 * (x * x + z * z); Rq[5] = 2 * (y * z - w * x);
  Rq[6] = 2 * (x * z - w * y); Rq[7] = 2 * (y * z + w * x); Rq[8] = 1 - 2 * (x * x + y * y);
}

// Normalized quaternion (torch.nn.functional.normalize, eps 1e-12) and the norm used.
template <typename T>
inline T normalize_quat(const T* q, T qn[4]) {
  const T nrm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  const T d = std::max(nrm, T(1e-12));
  for (int i = 0; i < 4; ++i) qn[i] = q[i] / d;
  return d;
}

// World covariance S = (Rq diag(s)) (Rq diag(s))^T, full 3x3 row-major; also returns M = Rq diag(s).
template <typename T>
inline void covariance(const T Rq[9], const T* s, T M[9], T S[9]) {
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) M[3 * i + j] = Rq[3 * i + j] * s[j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      S[3 * i + j] = M[3 * i] * M[3 * j] + M[3 * i + 1] * M[3 * j + 1] + M[3 * i + 2] * M[3 * j + 2];
}

// A B A^T for 3x3 row-major matrices.
template <typename T>
inline void sandwich(const T A[9], const T B[9], T out[9]) {
  T AB[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      AB[3 * i + j] = A[3 * i] * B[j] + A[3 * i + 1] * B[3 + j] + A[3 * i + 2] * B[6 + j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      out[3 * i + j] = AB[3 * i] * A[3 * j] + AB[3 * i + 1] * A[3 * j + 1] + AB[3 * i + 2] * A[3 * j + 2];
}

// SH bases (and optionally their partial derivatives w.r.t. the unit direction) for k bases.
template <typename T>
inline void sh_bases(int k, T x, T y, T z, T* Y, T* dx, T* dy, T* dz) {
  Y[0] = T(SH_C0);
  if (dx) { dx[0] = dy[0] = dz[0] = T(0); }
  if (k <= 1) return;
  const T c1 = T(SH_C1);
  Y[1] = -c1 * y; Y[2] = c1 * z; Y[3] = -c1 * x;
  if (dx) {
    dx[1] = 0; dy[1] = -c1; dz[1] = 0;
    dx[2] = 0; dy[2] = 0; dz[2] = c1;
    dx[3] = -c1; dy[3] = 0; dz[3] = 0;
  }
  if (k <= 4) return;
  const T xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
  const T c2[5] = {T(SH_C2[0]), T(SH_C2[1]), T(SH_C2[2]), T(SH_C2[3]), T(SH_C2[4])};
  Y[4] = c2[0] * xy; Y[5] = c2[1] * yz; Y[6] = c2[2] * (T(2) * zz - xx - yy); Y[7] = c2[3] * xz;
  Y[8] = c2[4] * (xx - yy);
  if (dx) {
    dx[4] = c2[0] * y; dy[4] = c2[0] * x; dz[4] = 0;
    dx[5] = 0; dy[5] = c2[1] * z; dz[5] = c2[1] * y;
    dx[6] = c2[2] * (-2 * x); dy[6] = c2[2] * (-2 * y); dz[6] = c2[2] * (4 * z);
    dx[7] = c2[3] * z; dy[7] = 0; dz[7] = c2[3] * x;
    dx[8] = c2[4] * (2 * x); dy[8] = c2[4] * (-2 * y); dz[8] = 0;
  }
  if (k <= 9) return;
  const T c3[7] = {T(SH_C3[0]), T(SH_C3[1]), T(SH_C3[2]), T(SH_C3[3]), T(SH_C3[4]), T(SH_C3[5]),
                   T(SH_C3[6])};
  Y[9] = c3[0] * y * (T(3) * xx - yy);
  Y[10] = c3[1] * xy * z;
  Y[11] = c3[2] * y * (T(4) * zz - xx - yy);
  Y[12] = c3[3] * z * (T(2) * zz - T(3) * xx - T(3) * yy);
  Y[13] = c3[4] * x * (T(4) * zz - xx - yy);
  Y[14] = c3[5] * z * (xx - yy);
  Y[15] = c3[6] * x * (xx - T(3) * yy);
  if (dx) {
    dx[9] = c3[0] * 6 * xy; dy[9] = c3[0] * (3 * xx - 3 * yy); dz[9] = 0;
    dx[10] = c3[1] * yz; dy[10] = c3[1] * xz; dz[10] = c3[1] * xy;
    dx[11] = c3[2] * (-2 * xy); dy[11] = c3[2] * (4 * zz - xx - 3 * yy); dz[11] = c3[2] * 8 * yz;
    dx[12] = c3[3] * (-6 * xz); dy[12] = c3[3] * (-6 * yz); dz[12] = c3[3] * (6 * zz - 3 * xx - 3 * yy);
    dx[13] = c3[4] * (4 * zz - 3 * xx - yy); dy[13] = c3[4] * (-2 * xy); dz[13] = c3[4] * 8 * xz;
    dx[14] = c3[5] * 2 * xz; dy[14] = c3[5] * (-2 * yz); dz[14] = c3[5] * (xx - yy);
    dx[15] = c3[6] * (3 * xx - 3 * yy); dy[15] = c3[6] * (-6 * xy); dz[15] = 0;
  }
}

// Everything the forward computes for one (camera, Gaussian) pair, reused by the backward.
template <typename T>
struct PairState {
  T p[3];              // camera-space mean
  T Sc[9];             // camera-space covariance
  T u, v;              // clamped x/z, y/z
  bool u_free, v_free; // not clamped (gradient flows through u, v)
  T J0[3], J1[3];      // Jacobian rows
  T a, b, c, det;      // dilated 2D covariance and its determinant
  bool valid;          // in depth range, det > 0
};

template <typename T>
inline void project_pair(const Camera<T>& cam, const T* m, const T S[9], T eps2d, T near_plane,
                         T far_plane, PairState<T>& st) {
  for (int i = 0; i < 3; ++i)
    st.p[i] = cam.R[3 * i] * m[0] + cam.R[3 * i + 1] * m[1] + cam.R[3 * i + 2] * m[2] + cam.t[i];
  const T tz = st.p[2];
  st.valid = tz > near_plane && tz < far_plane;
  if (!st.valid) return;
  sandwich(cam.R, S, st.Sc);
  const T ux = st.p[0] / tz, vy = st.p[1] / tz;
  st.u_free = ux >= -cam.lim_xn && ux <= cam.lim_xp;
  st.v_free = vy >= -cam.lim_yn && vy <= cam.lim_yp;
  st.u = std::min(std::max(ux, -cam.lim_xn), cam.lim_xp);
  st.v = std::min(std::max(vy, -cam.lim_yn), cam.lim_yp);
  st.J0[0] = cam.fx / tz; st.J0[1] = 0; st.J0[2] = -cam.fx * st.u / tz;
  st.J1[0] = 0; st.J1[1] = cam.fy / tz; st.J1[2] = -cam.fy * st.v / tz;
  T JS0[3], JS1[3];  // J_r Sc
  for (int j = 0; j < 3; ++j) {
    JS0[j] = st.J0[0] * st.Sc[j] + st.J0[1] * st.Sc[3 + j] + st.J0[2] * st.Sc[6 + j];
    JS1[j] = st.J1[0] * st.Sc[j] + st.J1[1] * st.Sc[3 + j] + st.J1[2] * st.Sc[6 + j];
  }
  st.a = JS0[0] * st.J0[0] + JS0[1] * st.J0[1] + JS0[2] * st.J0[2] + eps2d;
  st.b = JS0[0] * st.J1[0] + JS0[1] * st.J1[1] + JS0[2] * st.J1[2];
  st.c = JS1[0] * st.J1[0] + JS1[1] * st.J1[1] + JS1[2] * st.J1[2] + eps2d;
  st.det = st.a * st.c - st.b * st.b;
  st.valid = st.det > T(0);
}

template <typename T>
void project_forward(int C, int N, const T* means, const T* quats, const T* scales, const T* opac,
                     const T* viewmats, const T* Ks, const T* sh, int K, int degree, int W, int H,
                     T eps2d, T near_plane, T far_plane, T* means2d, T* conics, T* depths,
                     int32_t* radii, T* colors, int nthreads) {
  std::vector<Camera<T>> cams;
  for (int c = 0; c < C; ++c) cams.emplace_back(viewmats + 16 * c, Ks + 9 * c, W, H);
  const int kb = degree >= 0 ? (degree + 1) * (degree + 1) : 0;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int n = 0; n < N; ++n) {
    T qn[4], Rq[9], M[9], S[9];
    normalize_quat(quats + 4 * n, qn);
    quat_to_rot(qn, Rq);
    covariance(Rq, scales + 3 * n, M, S);
    const T* m = means + 3 * n;
    const T o = opac[n];
    // opacity-aware box (gsplat 1.5): outside it every alpha is below 1/255
    const T ext = o >= T(ALPHA_MIN_D)
                      ? std::min(T(RADIUS_SIGMAS), std::sqrt(T(2) * std::log(o / T(ALPHA_MIN_D))))
                      : T(0);
    for (int c = 0; c < C; ++c) {
      const int64_t cn = static_cast<int64_t>(c) * N + n;
      PairState<T> st;
      project_pair(cams[c], m, S, eps2d, near_plane, far_plane, st);
      depths[cn] = st.p[2];
      radii[2 * cn] = radii[2 * cn + 1] = 0;
      means2d[2 * cn] = means2d[2 * cn + 1] = T(0);
      conics[3 * cn] = conics[3 * cn + 1] = conics[3 * cn + 2] = T(0);
      if (sh) colors[3 * cn] = colors[3 * cn + 1] = colors[3 * cn + 2] = T(0);
      if (!st.valid) continue;
      const T tz = st.p[2];
      const T mx = cams[c].fx * st.p[0] / tz + cams[c].cx;
      const T my = cams[c].fy * st.p[1] / tz + cams[c].cy;
      const T rx = std::ceil(T(RADIUS_SIGMAS) * std::sqrt(st.a));
      const T ry = std::ceil(T(RADIUS_SIGMAS) * std::sqrt(st.c));
      if (!(mx + rx > 0 && mx - rx < T(W) && my + ry > 0 && my - ry < T(H))) continue;
      if (o < T(ALPHA_MIN_D)) continue;
      radii[2 * cn] = static_cast<int32_t>(std::max(T(1), std::ceil(ext * std::sqrt(st.a))));
      radii[2 * cn + 1] = static_cast<int32_t>(std::max(T(1), std::ceil(ext * std::sqrt(st.c))));
      means2d[2 * cn] = mx;
      means2d[2 * cn + 1] = my;
      conics[3 * cn] = st.c / st.det;
      conics[3 * cn + 1] = -st.b / st.det;
      conics[3 * cn + 2] = st.a / st.det;
      if (sh) {
        const T* co = sh + static_cast<int64_t>(n) * K * 3;
        T Y[16];
        T d[3] = {m[0] - cams[c].campos[0], m[1] - cams[c].campos[1], m[2] - cams[c].campos[2]};
        const T dn = std::max(std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), T(1e-12));
        if (kb > 1) sh_bases<T>(kb, d[0] / dn, d[1] / dn, d[2] / dn, Y, nullptr, nullptr, nullptr);
        for (int ch = 0; ch < 3; ++ch) {
          T raw;
          if (kb == 1) {
            raw = T(SH_C0) * co[ch];
          } else {
            raw = T(0);
            for (int k = 0; k < kb; ++k) raw += Y[k] * co[3 * k + ch];
          }
          colors[3 * cn + ch] = std::max(raw + T(0.5), T(0));
        }
      }
    }
  }
}

template <typename T>
void project_backward(int C, int N, const T* means, const T* quats, const T* scales,
                      const T* viewmats, const T* Ks, const T* sh, int K, int degree, int W, int H,
                      T eps2d, T near_plane, T far_plane, const int32_t* radii, const T* g_means2d,
                      const T* g_conics, const T* g_depths, const T* g_colors, T* g_means, T* g_quats,
                      T* g_scales, T* g_viewmats, T* g_sh, int nthreads) {
  std::vector<Camera<T>> cams;
  for (int c = 0; c < C; ++c) cams.emplace_back(viewmats + 16 * c, Ks + 9 * c, W, H);
  const int kb = degree >= 0 ? (degree + 1) * (degree + 1) : 0;
  const int nchunks = (N + PROJ_CHUNK - 1) / PROJ_CHUNK;
  std::vector<T> gview(static_cast<size_t>(nchunks) * C * 12, T(0));  // per chunk: gR (9), gt (3)
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int chunk = 0; chunk < nchunks; ++chunk) {
    T* gv = gview.data() + static_cast<size_t>(chunk) * C * 12;
    const int n1 = std::min(N, (chunk + 1) * PROJ_CHUNK);
    for (int n = chunk * PROJ_CHUNK; n < n1; ++n) {
      bool any = false;
      for (int c = 0; c < C; ++c) any = any || radii[2 * (static_cast<int64_t>(c) * N + n)] > 0;
      T* gm = g_means + 3 * n;
      if (!any) continue;
      T qn[4], Rq[9], M[9], S[9];
      const T qnorm = normalize_quat(quats + 4 * n, qn);
      quat_to_rot(qn, Rq);
      const T* s = scales + 3 * n;
      covariance(Rq, s, M, S);
      const T* m = means + 3 * n;
      T gS[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};  // dL/dSigma (world), symmetric
      for (int c = 0; c < C; ++c) {
        const int64_t cn = static_cast<int64_t>(c) * N + n;
        if (radii[2 * cn] <= 0) continue;
        const Camera<T>& cam = cams[c];
        PairState<T> st;
        project_pair(cam, m, S, eps2d, near_plane, far_plane, st);
        const T tz = st.p[2], itz = T(1) / tz, itz2 = itz * itz;
        T gp[3] = {0, 0, 0};  // dL/d(camera-space mean)
        T* gR = gv + 12 * c;
        T* gt = gR + 9;
        // SH colour -> coefficients and view direction
        if (sh) {
          const T* co = sh + static_cast<int64_t>(n) * K * 3;
          T* gco = g_sh + static_cast<int64_t>(n) * K * 3;
          T d[3] = {m[0] - cam.campos[0], m[1] - cam.campos[1], m[2] - cam.campos[2]};
          const T nrm = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
          const T dn = std::max(nrm, T(1e-12));
          const T ux = d[0] / dn, uy = d[1] / dn, uz = d[2] / dn;
          T Y[16], dYx[16], dYy[16], dYz[16];
          sh_bases<T>(std::max(kb, 1), ux, uy, uz, Y, dYx, dYy, dYz);
          T graw[3];
          for (int ch = 0; ch < 3; ++ch) {
            T raw = T(0);
            if (kb == 1) {
              raw = T(SH_C0) * co[ch];
            } else {
              for (int k = 0; k < kb; ++k) raw += Y[k] * co[3 * k + ch];
            }
            graw[ch] = raw + T(0.5) >= T(0) ? g_colors[3 * cn + ch] : T(0);
          }
          T gu[3] = {0, 0, 0};
          for (int k = 0; k < kb; ++k) {
            T gk = T(0);
            for (int ch = 0; ch < 3; ++ch) {
              gco[3 * k + ch] += Y[k] * graw[ch];
              gk += co[3 * k + ch] * graw[ch];
            }
            gu[0] += dYx[k] * gk; gu[1] += dYy[k] * gk; gu[2] += dYz[k] * gk;
          }
          if (kb > 1) {
            T gd[3];
            if (nrm > T(1e-12)) {
              const T dot = ux * gu[0] + uy * gu[1] + uz * gu[2];
              gd[0] = (gu[0] - ux * dot) / nrm; gd[1] = (gu[1] - uy * dot) / nrm;
              gd[2] = (gu[2] - uz * dot) / nrm;
            } else {
              for (int i = 0; i < 3; ++i) gd[i] = gu[i] / dn;
            }
            for (int i = 0; i < 3; ++i) gm[i] += gd[i];
            // campos = -R^T t, d = m - campos: dL/dcampos = -gd
            for (int i = 0; i < 3; ++i) {
              for (int j = 0; j < 3; ++j) gR[3 * i + j] += cam.t[i] * gd[j];  // -t_i * (-gd_j)
              gt[i] += cam.R[3 * i] * gd[0] + cam.R[3 * i + 1] * gd[1] + cam.R[3 * i + 2] * gd[2];
            }
          }
        }
        // conic (A, B, C) = (c, -b, a) / det  ->  dilated 2D covariance (a, b, c)
        const T gA = g_conics[3 * cn], gB = g_conics[3 * cn + 1], gC = g_conics[3 * cn + 2];
        const T iD = T(1) / st.det, iD2 = iD * iD, a = st.a, b = st.b, cc = st.c;
        const T ga = gA * (-cc * cc * iD2) + gB * (b * cc * iD2) + gC * (iD - a * cc * iD2);
        const T gb = gA * (T(2) * b * cc * iD2) + gB * (-iD - T(2) * b * b * iD2) + gC * (T(2) * a * b * iD2);
        const T gc = gA * (iD - a * cc * iD2) + gB * (a * b * iD2) + gC * (-a * a * iD2);
        // (a, b, c) = (J0 Sc J0^T, J0 Sc J1^T, J1 Sc J1^T) + eps
        T JS0[3], JS1[3];
        for (int j = 0; j < 3; ++j) {
          JS0[j] = st.J0[0] * st.Sc[j] + st.J0[1] * st.Sc[3 + j] + st.J0[2] * st.Sc[6 + j];
          JS1[j] = st.J1[0] * st.Sc[j] + st.J1[1] * st.Sc[3 + j] + st.J1[2] * st.Sc[6 + j];
        }
        T gJ0[3], gJ1[3], gSc[9];
        for (int j = 0; j < 3; ++j) {
          gJ0[j] = T(2) * ga * JS0[j] + gb * JS1[j];
          gJ1[j] = gb * JS0[j] + T(2) * gc * JS1[j];
        }
        for (int i = 0; i < 3; ++i)
          for (int j = 0; j < 3; ++j)
            gSc[3 * i + j] = ga * st.J0[i] * st.J0[j] + T(0.5) * gb * (st.J0[i] * st.J1[j] + st.J1[i] * st.J0[j]) +
                             gc * st.J1[i] * st.J1[j];
        // J = [[fx/z, 0, -fx u/z], [0, fy/z, -fy v/z]]
        gp[2] += -(gJ0[0] * cam.fx + gJ1[1] * cam.fy) * itz2;
        gp[2] += (gJ0[2] * cam.fx * st.u + gJ1[2] * cam.fy * st.v) * itz2;
        const T gu_ = -gJ0[2] * cam.fx * itz, gv_ = -gJ1[2] * cam.fy * itz;
        if (st.u_free) { gp[0] += gu_ * itz; gp[2] -= gu_ * st.p[0] * itz2; }
        if (st.v_free) { gp[1] += gv_ * itz; gp[2] -= gv_ * st.p[1] * itz2; }
        // means2d = (fx x / z + cx, fy y / z + cy), depth = z
        const T gmx = g_means2d[2 * cn], gmy = g_means2d[2 * cn + 1];
        gp[0] += gmx * cam.fx * itz;
        gp[1] += gmy * cam.fy * itz;
        gp[2] += -(gmx * cam.fx * st.p[0] + gmy * cam.fy * st.p[1]) * itz2 + g_depths[cn];
        // p = R m + t
        for (int j = 0; j < 3; ++j) gm[j] += cam.R[j] * gp[0] + cam.R[3 + j] * gp[1] + cam.R[6 + j] * gp[2];
        for (int i = 0; i < 3; ++i) {
          for (int j = 0; j < 3; ++j) gR[3 * i + j] += gp[i] * m[j];
          gt[i] += gp[i];
        }
        // Sc = R S R^T: dS = R^T gSc R, dR = 2 gSc R S (gSc, S symmetric)
        T RS[9], gScR[9];
        for (int i = 0; i < 3; ++i)
          for (int j = 0; j < 3; ++j) {
            RS[3 * i + j] = cam.R[3 * i] * S[j] + cam.R[3 * i + 1] * S[3 + j] + cam.R[3 * i + 2] * S[6 + j];
            gScR[3 * i + j] = gSc[3 * i] * cam.R[j] + gSc[3 * i + 1] * cam.R[3 + j] + gSc[3 * i + 2] * cam.R[6 + j];
          }
        for (int i = 0; i < 3; ++i)
          for (int j = 0; j < 3; ++j) {
            gR[3 * i + j] += T(2) * (gSc[3 * i] * RS[j] + gSc[3 * i + 1] * RS[3 + j] + gSc[3 * i + 2] * RS[6 + j]);
            gS[3 * i + j] += cam.R[i] * gScR[j] + cam.R[3 + i] * gScR[3 + j] + cam.R[6 + i] * gScR[6 + j];
          }
      }
      // S = M M^T, M = Rq diag(s): dM = 2 gS M
      T gM[9];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
          gM[3 * i + j] = T(2) * (gS[3 * i] * M[j] + gS[3 * i + 1] * M[3 + j] + gS[3 * i + 2] * M[6 + j]);
      T gRq[9];
      for (int j = 0; j < 3; ++j) {
        T gsj = T(0);
        for (int i = 0; i < 3; ++i) {
          gRq[3 * i + j] = gM[3 * i + j] * s[j];
          gsj += gM[3 * i + j] * Rq[3 * i + j];
        }
        g_scales[3 * n + j] += gsj;
      }
      const T w = qn[0], x = qn[1], y = qn[2], z = qn[3];
      T gq[4];
      gq[0] = 2 * (-z * gRq[1] + y * gRq[2] + z * gRq[3] - x * gRq[5] - y * gRq[6] + x * gRq[7]);
      gq[1] = 2 * (y * gRq[1] + z * gRq[2] + y * gRq[3] - 2 * x * gRq[4] - w * gRq[5] + z * gRq[6] +
                   w * gRq[7] - 2 * x * gRq[8]);
      gq[2] = 2 * (-2 * y * gRq[0] + x * gRq[1] + w * gRq[2] + x * gRq[3] + z * gRq[5] - w * gRq[6] +
                   z * gRq[7] - 2 * y * gRq[8]);
      gq[3] = 2 * (-2 * z * gRq[0] - w * gRq[1] + x * gRq[2] + w * gRq[3] - 2 * z * gRq[4] + y * gRq[5] +
                   x * gRq[6] + y * gRq[7]);
      const T dot = qn[0] * gq[0] + qn[1] * gq[1] + qn[2] * gq[2] + qn[3] * gq[3];
      for (int i = 0; i < 4; ++i) g_quats[4 * n + i] += (gq[i] - qn[i] * dot) / qnorm;
    }
  }
  for (int chunk = 0; chunk < nchunks; ++chunk)  // fixed order: deterministic
    for (int c = 0; c < C; ++c) {
      const T* gv = gview.data() + (static_cast<size_t>(chunk) * C + c) * 12;
      for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) g_viewmats[16 * c + 4 * i + j] += gv[3 * i + j];
        g_viewmats[16 * c + 4 * i + 3] += gv[9 + i];
      }
    }
}

}  // namespace foresplat_raster
