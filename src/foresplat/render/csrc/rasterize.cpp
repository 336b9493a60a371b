// Tiled CPU rasterizer for projected 3D Gaussians (3DGS semantics), forward and hand-written backward.
//
// Inputs per camera c (all contiguous, float32 or float64):
//   means2d [C,N,2] pixels, conics [C,N,3] (a,b,c: power = 0.5(a dx^2 + c dy^2) + b dx dy),
//   colors [C,N,3], opacities [N], depths [C,N], radii [C,N,2] int32 box half-sizes (0 = culled).
// Forward (per pixel, front to back over the depth-sorted Gaussians of its 16x16 tile):
//   alpha = min(0.99, o exp(-power)); skipped if power < 0 or alpha < 1/255;
//   if T (1 - alpha) < 1e-4 the Gaussian is not added and the pixel stops (3DGS rule);
//   w = alpha T; rgb += w c; wz += w z; T *= 1 - alpha.
// Outputs: colours [C,H,W,3] = rgb + T bg, alphas = 1 - T, expected depths wz / alpha (0 where
//   alpha = 0), plus what the backward needs: T_final [C,H,W], last [C,H,W] int32 (1 + position in
//   the tile list of the last contributor), tile offsets [C*TH*TW+1] int32 and the flattened
//   per-tile Gaussian ids (c*N + g) in depth order.
// Backward: back-to-front replay per pixel (T recovered as T_{i} = T_{i+1} / (1 - alpha_i)), gradients
// for means2d, conics, colors, opacities, depths and backgrounds. Each tile writes the gradient of each of its
// list entries into its own slot; a serial pass then sums the slots per Gaussian, so the result does
// not depend on the number of threads or the schedule (deterministic).
//
// Parallel over tiles with OpenMP; the per-tile loops run Gaussian-outer / pixel-inner over 16-wide
// tile rows with explicit vector types (raster.h), visiting only the rows and row segments where the
// Gaussian's alpha can reach 1/255.
//
// project_forward / project_backward (project.h): the EWA projection and SH colours of
// projection.py / sh.py, natively, with a hand-written backward to means, quats, scales, SH
// coefficients and viewmats (not Ks).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/python.h>  // pybind11 + at::Tensor casters; lighter than torch/extension.h

#include "project.h"
#include "raster.h"

namespace {

using namespace foresplat_raster;

void check_inputs(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                  const at::Tensor& opac, const at::Tensor& depths, const at::Tensor& radii) {
  TORCH_CHECK(means2d.dim() == 3 && means2d.size(2) == 2, "means2d must be [C,N,2]");
  const auto C = means2d.size(0), N = means2d.size(1);
  TORCH_CHECK(conics.sizes() == at::IntArrayRef({C, N, 3}), "conics must be [C,N,3]");
  TORCH_CHECK(colors.sizes() == at::IntArrayRef({C, N, 3}), "colors must be [C,N,3]");
  TORCH_CHECK(opac.sizes() == at::IntArrayRef({N}), "opacities must be [N]");
  TORCH_CHECK(depths.sizes() == at::IntArrayRef({C, N}), "depths must be [C,N]");
  TORCH_CHECK(radii.sizes() == at::IntArrayRef({C, N, 2}) && radii.scalar_type() == at::kInt,
              "radii must be int32 [C,N,2]");
  for (const auto* t : {&means2d, &conics, &colors, &opac, &depths, &radii}) {
    TORCH_CHECK(t->is_contiguous() && t->device().is_cpu(), "inputs must be contiguous CPU tensors");
  }
  for (const auto* t : {&conics, &colors, &opac, &depths})
    TORCH_CHECK(t->scalar_type() == means2d.scalar_type(), "all float inputs must share one dtype");
  TORCH_CHECK(C * N < (int64_t(1) << 31), "C * N must fit in int32");
}

void check_background(const at::Tensor& bg, int64_t C, const at::Tensor& like) {
  TORCH_CHECK(bg.sizes() == at::IntArrayRef({C, 3}) && bg.is_contiguous() &&
                  bg.scalar_type() == like.scalar_type(),
              "backgrounds must be a contiguous [C,3] tensor of the means' dtype");
}

// Returns colors [C,H,W,3] (background included), alphas [C,H,W,1], depths [C,H,W,1] (expected z),
// and for the backward: T_final [C,H,W], last [C,H,W] int32, tile offsets, per-tile ids.
std::vector<at::Tensor> forward(const at::Tensor& means2d, const at::Tensor& conics,
                                   const at::Tensor& colors, const at::Tensor& opac,
                                   const at::Tensor& depths, const at::Tensor& radii, int64_t width,
                                   int64_t height, const at::Tensor& backgrounds) {
  check_inputs(means2d, conics, colors, opac, depths, radii);
  const int C = means2d.size(0), N = means2d.size(1), W = width, H = height;
  const bool has_bg = backgrounds.numel() > 0;
  if (has_bg) check_background(backgrounds, C, means2d);
  const int TW = (W + TILE - 1) / TILE, TH = (H + TILE - 1) / TILE;
  auto fopt = means2d.options();
  auto rgb = at::empty({C, H, W, 3}, fopt);
  auto alpha = at::empty({C, H, W, 1}, fopt);
  auto depth = at::empty({C, H, W, 1}, fopt);
  auto tfin = at::empty({C, H, W}, fopt);
  auto last = at::empty({C, H, W}, fopt.dtype(at::kInt));
  at::Tensor offsets, ids;
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "foresplat_raster_fwd", [&] {
    Binning bin = bin_gaussians<scalar_t>(means2d.data_ptr<scalar_t>(), depths.data_ptr<scalar_t>(),
                                          radii.data_ptr<int32_t>(), C, N, TW, TH);
    run_forward<scalar_t>(bin, TW, TH, W, H, C, N, means2d.data_ptr<scalar_t>(),
                          conics.data_ptr<scalar_t>(), colors.data_ptr<scalar_t>(),
                          opac.data_ptr<scalar_t>(), depths.data_ptr<scalar_t>(),
                          radii.data_ptr<int32_t>(), has_bg ? backgrounds.data_ptr<scalar_t>() : nullptr,
                          rgb.data_ptr<scalar_t>(), alpha.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(),
                          tfin.data_ptr<scalar_t>(), last.data_ptr<int32_t>(),
                          std::max(1, at::get_num_threads()));
    offsets = at::from_blob(bin.offsets.data(), {static_cast<int64_t>(bin.offsets.size())},
                               at::kInt).clone();
    ids = at::from_blob(bin.ids.data(), {static_cast<int64_t>(bin.ids.size())}, at::kInt).clone();
  });
  return {rgb, alpha, depth, tfin, last, offsets, ids};
}

// Returns d means2d [C,N,2], d conics [C,N,3], d colors [C,N,3], d opacities [N], d depths [C,N],
// d backgrounds [C,3] (empty without backgrounds).
std::vector<at::Tensor> backward(const at::Tensor& means2d, const at::Tensor& conics,
                                    const at::Tensor& colors, const at::Tensor& opac,
                                    const at::Tensor& depths, const at::Tensor& radii,
                                    const at::Tensor& offsets, const at::Tensor& ids,
                                    const at::Tensor& t_final, const at::Tensor& last,
                                    const at::Tensor& out_depth, const at::Tensor& backgrounds,
                                    const at::Tensor& g_rgb, const at::Tensor& g_alpha,
                                    const at::Tensor& g_depth) {
  check_inputs(means2d, conics, colors, opac, depths, radii);
  const int C = means2d.size(0), N = means2d.size(1), H = t_final.size(1), W = t_final.size(2);
  const bool has_bg = backgrounds.numel() > 0;
  if (has_bg) check_background(backgrounds, C, means2d);
  const int TW = (W + TILE - 1) / TILE, TH = (H + TILE - 1) / TILE;
  TORCH_CHECK(offsets.numel() == int64_t(C) * TW * TH + 1, "offsets do not match the image size");
  TORCH_CHECK(g_rgb.numel() == int64_t(C) * H * W * 3 && g_alpha.numel() == int64_t(C) * H * W &&
              g_depth.numel() == int64_t(C) * H * W && out_depth.numel() == int64_t(C) * H * W,
              "output gradients do not match the image size");
  for (const auto* t : {&t_final, &g_rgb, &g_alpha, &g_depth, &out_depth, &last, &offsets, &ids})
    TORCH_CHECK(t->is_contiguous(), "backward inputs must be contiguous");
  auto fopt = means2d.options();
  auto g_means2d = at::zeros({C, N, 2}, fopt);
  auto g_conics = at::zeros({C, N, 3}, fopt);
  auto g_colors = at::zeros({C, N, 3}, fopt);
  auto g_opac = at::zeros({N}, fopt);
  auto g_depths = at::zeros({C, N}, fopt);
  auto g_bg = has_bg ? at::zeros({C, 3}, fopt) : at::empty({0}, fopt);
  const int64_t nisect = ids.numel();
  auto buf = at::empty({nisect * NGRAD}, fopt);  // every slot is written by its tile
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "foresplat_raster_bwd", [&] {
    run_backward<scalar_t>(TW, TH, W, H, C, N, nisect, offsets.data_ptr<int32_t>(), ids.data_ptr<int32_t>(),
                           means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
                           colors.data_ptr<scalar_t>(), opac.data_ptr<scalar_t>(),
                           depths.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
                           t_final.data_ptr<scalar_t>(), last.data_ptr<int32_t>(),
                           out_depth.data_ptr<scalar_t>(), has_bg ? backgrounds.data_ptr<scalar_t>() : nullptr,
                           g_rgb.data_ptr<scalar_t>(), g_alpha.data_ptr<scalar_t>(),
                           g_depth.data_ptr<scalar_t>(), buf.data_ptr<scalar_t>(),
                           g_means2d.data_ptr<scalar_t>(), g_conics.data_ptr<scalar_t>(),
                           g_colors.data_ptr<scalar_t>(), g_opac.data_ptr<scalar_t>(),
                           g_depths.data_ptr<scalar_t>(), has_bg ? g_bg.data_ptr<scalar_t>() : nullptr,
                           std::max(1, at::get_num_threads()));
  });
  return {g_means2d, g_conics, g_colors, g_opac, g_depths, g_bg};
}

void check_float(const char* name, const at::Tensor& t, at::IntArrayRef shape, const at::Tensor& like) {
  TORCH_CHECK(t.sizes() == shape, name, ": unexpected shape ", t.sizes(), ", expected ", shape);
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, ": dtype differs from means");
  TORCH_CHECK(t.is_contiguous() && t.device().is_cpu(), name, ": must be a contiguous CPU tensor");
}

// Returns means2d [C,N,2], conics [C,N,3], depths [C,N], radii [C,N,2] int32 (opacity-aware boxes,
// 0 = culled), colors [C,N,3] (SH colours; empty when sh_degree < 0).
std::vector<at::Tensor> project_fwd(const at::Tensor& means, const at::Tensor& quats,
                                       const at::Tensor& scales, const at::Tensor& opac,
                                       const at::Tensor& viewmats, const at::Tensor& Ks,
                                       const at::Tensor& sh, int64_t sh_degree, int64_t width,
                                       int64_t height, double eps2d, double near_plane, double far_plane) {
  const int64_t N = means.size(0), C = viewmats.size(0);
  check_float("means", means, {N, 3}, means);
  check_float("quats", quats, {N, 4}, means);
  check_float("scales", scales, {N, 3}, means);
  check_float("opacities", opac, {N}, means);
  check_float("viewmats", viewmats, {C, 4, 4}, means);
  check_float("Ks", Ks, {C, 3, 3}, means);
  const int64_t K = sh_degree >= 0 ? sh.size(1) : 0;
  if (sh_degree >= 0) check_float("sh", sh, {N, K, 3}, means);
  TORCH_CHECK(C * N < (int64_t(1) << 31), "C * N must fit in int32");
  auto fopt = means.options();
  auto means2d = at::empty({C, N, 2}, fopt);
  auto conics = at::empty({C, N, 3}, fopt);
  auto depths = at::empty({C, N}, fopt);
  auto radii = at::empty({C, N, 2}, fopt.dtype(at::kInt));
  auto colors = sh_degree >= 0 ? at::empty({C, N, 3}, fopt) : at::empty({0}, fopt);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "foresplat_project_fwd", [&] {
    project_forward<scalar_t>(C, N, means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(),
                              scales.data_ptr<scalar_t>(), opac.data_ptr<scalar_t>(),
                              viewmats.data_ptr<scalar_t>(), Ks.data_ptr<scalar_t>(),
                              sh_degree >= 0 ? sh.data_ptr<scalar_t>() : nullptr, K, sh_degree, width,
                              height, eps2d, near_plane, far_plane, means2d.data_ptr<scalar_t>(),
                              conics.data_ptr<scalar_t>(), depths.data_ptr<scalar_t>(),
                              radii.data_ptr<int32_t>(),
                              sh_degree >= 0 ? colors.data_ptr<scalar_t>() : nullptr,
                              std::max(1, at::get_num_threads()));
  });
  return {means2d, conics, depths, radii, colors};
}

// Returns d means [N,3], d quats [N,4], d scales [N,3], d viewmats [C,4,4], d sh [N,K,3] (empty
// when sh_degree < 0).
std::vector<at::Tensor> project_bwd(const at::Tensor& means, const at::Tensor& quats,
                                       const at::Tensor& scales, const at::Tensor& viewmats,
                                       const at::Tensor& Ks, const at::Tensor& sh, int64_t sh_degree,
                                       int64_t width, int64_t height, double eps2d, double near_plane,
                                       double far_plane, const at::Tensor& radii,
                                       const at::Tensor& g_means2d, const at::Tensor& g_conics,
                                       const at::Tensor& g_depths, const at::Tensor& g_colors) {
  const int64_t N = means.size(0), C = viewmats.size(0);
  const int64_t K = sh_degree >= 0 ? sh.size(1) : 0;
  check_float("g_means2d", g_means2d, {C, N, 2}, means);
  check_float("g_conics", g_conics, {C, N, 3}, means);
  check_float("g_depths", g_depths, {C, N}, means);
  if (sh_degree >= 0) check_float("g_colors", g_colors, {C, N, 3}, means);
  TORCH_CHECK(radii.sizes() == at::IntArrayRef({C, N, 2}) && radii.is_contiguous(), "radii: bad shape");
  auto fopt = means.options();
  auto g_means = at::zeros({N, 3}, fopt);
  auto g_quats = at::zeros({N, 4}, fopt);
  auto g_scales = at::zeros({N, 3}, fopt);
  auto g_view = at::zeros({C, 4, 4}, fopt);
  auto g_sh = sh_degree >= 0 ? at::zeros({N, K, 3}, fopt) : at::empty({0}, fopt);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "foresplat_project_bwd", [&] {
    project_backward<scalar_t>(C, N, means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(),
                               scales.data_ptr<scalar_t>(), viewmats.data_ptr<scalar_t>(),
                               Ks.data_ptr<scalar_t>(), sh_degree >= 0 ? sh.data_ptr<scalar_t>() : nullptr,
                               K, sh_degree, width, height, eps2d, near_plane, far_plane,
                               radii.data_ptr<int32_t>(), g_means2d.data_ptr<scalar_t>(),
                               g_conics.data_ptr<scalar_t>(), g_depths.data_ptr<scalar_t>(),
                               sh_degree >= 0 ? g_colors.data_ptr<scalar_t>() : nullptr,
                               g_means.data_ptr<scalar_t>(), g_quats.data_ptr<scalar_t>(),
                               g_scales.data_ptr<scalar_t>(), g_view.data_ptr<scalar_t>(),
                               sh_degree >= 0 ? g_sh.data_ptr<scalar_t>() : nullptr,
                               std::max(1, at::get_num_threads()));
  });
  return {g_means, g_quats, g_scales, g_view, g_sh};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "tiled Gaussian rasterization, forward");
  m.def("backward", &backward, "tiled Gaussian rasterization, backward");
  m.def("project_forward", &project_fwd, "EWA projection + SH colours, forward");
  m.def("project_backward", &project_bwd, "EWA projection + SH colours, backward");
  m.attr("TILE") = TILE;
}
