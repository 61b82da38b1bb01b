#include "celeba_image.hpp"

#include <smmintrin.h>  // SSE4.1, used only where the CPU has it

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>

// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>
#include <jerror.h>  // message codes (JWRN_JPEG_EOF)

namespace modlab::celeba {

bool read_file(const std::string& path, std::vector<std::uint8_t>& bytes, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    error = std::strerror(errno);
    return false;
  }
  bytes.clear();
  std::uint8_t buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.insert(bytes.end(), buf, buf + n);
  bool bad = std::ferror(f) != 0;
  std::fclose(f);
  if (bad) {
    error = "read error";
    return false;
  }
  return true;
}

// ------------------------------------------------------------------ JPEG

namespace {

// libjpeg reports fatal errors through error_exit, which must not return: the documented way out
// is longjmp back to the decoding function. Only plain C objects live in that function's frame.
struct JpegErrors {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated;
};

void on_jpeg_error(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

// Warnings are not printed. A premature end of data is remembered: libjpeg pads such an image
// with grey and carries on, while Pillow rejects it ("image file is truncated").
void on_jpeg_message(j_common_ptr cinfo, int level) {
  auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
  if (level < 0) {
    cinfo->err->num_warnings++;
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = true;
  }
}

}  // namespace

bool decode_jpeg(const std::uint8_t* data, std::size_t size, RgbImage& out, std::string& error, std::uint64_t max_pixels) {
  jpeg_decompress_struct cinfo;
  JpegErrors jerr;
  jerr.truncated = false;
  jerr.message[0] = '\0';
  cinfo.err = jpeg_std_error(&jerr.mgr);
  jerr.mgr.error_exit = on_jpeg_error;
  jerr.mgr.emit_message = on_jpeg_message;
  if (setjmp(jerr.jump)) {
    jpeg_destroy_decompress(&cinfo);
    error = jerr.message;
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    error = "CMYK JPEGs are not supported";
    return false;
  }
  // A damaged header can announce 65,500 x 65,500 pixels in a few bytes: refuse before allocating.
  if (static_cast<std::uint64_t>(cinfo.image_width) * cinfo.image_height > max_pixels) {
    error = "its header announces " + std::to_string(cinfo.image_width) + " x " + std::to_string(cinfo.image_height) +
            " pixels, more than the " + std::to_string(max_pixels) + " decoded (a damaged file?)";
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  out.width = static_cast<int>(cinfo.output_width);
  out.height = static_cast<int>(cinfo.output_height);
  const std::size_t stride = static_cast<std::size_t>(out.width) * 3;
  // one spare byte: the resizer reads pixels as 4-byte words
  out.pixels.resize(stride * static_cast<std::size_t>(out.height) + 1);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.pixels.data() + stride * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (jerr.truncated) {
    error = "truncated JPEG data (premature end of file)";
    return false;
  }
  return true;
}

// ------------------------------------------------------------------ resizing

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS for 8-bit images

double triangle(double x) {
  x = std::abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

inline std::uint8_t clip8(std::int32_t v) {
  v >>= kPrecisionBits;
  return static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

}  // namespace

// Follows Pillow's precompute_coeffs + normalize_coeffs_8bpc (libImaging/Resample.c) step by step,
// including its truncating casts, so the integer weights are identical.
BilinearResizer::Coefficients BilinearResizer::precompute(int in_size, int out_size) {
  Coefficients c;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filterscale;  // the bilinear filter's support is 1
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  std::vector<double> kk(static_cast<std::size_t>(out_size) * static_cast<std::size_t>(c.ksize), 0.0);
  c.bounds.assign(static_cast<std::size_t>(out_size) * 2, 0);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &kk[static_cast<std::size_t>(xx) * static_cast<std::size_t>(c.ksize)];
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      double w = triangle((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x)
      if (ww != 0.0) k[x] /= ww;
    c.bounds[static_cast<std::size_t>(xx) * 2] = xmin;
    c.bounds[static_cast<std::size_t>(xx) * 2 + 1] = xmax;
  }
  c.weights.resize(kk.size());
  for (std::size_t i = 0; i < kk.size(); ++i)
    c.weights[i] = kk[i] < 0 ? static_cast<std::int32_t>(-0.5 + kk[i] * (1 << kPrecisionBits))
                             : static_cast<std::int32_t>(0.5 + kk[i] * (1 << kPrecisionBits));
  return c;
}

BilinearResizer::BilinearResizer(int in_width, int in_height, int out_width, int out_height)
    : in_w_(in_width), in_h_(in_height), out_w_(out_width), out_h_(out_height),
      horiz_(precompute(in_width, out_width)), vert_(precompute(in_height, out_height)) {}

namespace {

// One row of the horizontal pass: RGB input (3 bytes a pixel, read as 4-byte words whose last
// byte is ignored) to RGBX output. Four channels in one SSE register: exact int32 arithmetic.
__attribute__((target("sse4.1"))) void horizontal_sse41(const std::uint8_t* src, std::uint8_t* dst, int out_w,
                                                        const int* bounds, const std::int32_t* weights, int ksize) {
  for (int xx = 0; xx < out_w; ++xx) {
    const int xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
    const std::int32_t* k = weights + static_cast<std::ptrdiff_t>(xx) * ksize;
    const std::uint8_t* p = src + static_cast<std::ptrdiff_t>(xmin) * 3;
    __m128i s = _mm_set1_epi32(1 << (kPrecisionBits - 1));
    for (int x = 0; x < xmax; ++x) {
      std::int32_t px;
      std::memcpy(&px, p + x * 3, 4);
      s = _mm_add_epi32(s, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(px)), _mm_set1_epi32(k[x])));
    }
    // >> 22, then saturate to 0..255 (the shifted sums fit int16, so the two packs clamp exactly)
    s = _mm_srai_epi32(s, kPrecisionBits);
    s = _mm_packus_epi16(_mm_packs_epi32(s, s), s);
    const std::int32_t v = _mm_cvtsi128_si32(s);
    std::memcpy(dst + xx * 4, &v, 4);
  }
}

// One output row of the vertical pass over RGBX rows.
__attribute__((target("sse4.1"))) void vertical_sse41(const std::uint8_t* rows, std::size_t row_bytes, int ymin,
                                                      int ymax, const std::int32_t* k, std::uint8_t* dst) {
  for (std::size_t i = 0; i < row_bytes; i += 4) {
    __m128i s = _mm_set1_epi32(1 << (kPrecisionBits - 1));
    for (int y = 0; y < ymax; ++y) {
      std::int32_t px;
      std::memcpy(&px, rows + static_cast<std::size_t>(ymin + y) * row_bytes + i, 4);
      s = _mm_add_epi32(s, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(px)), _mm_set1_epi32(k[y])));
    }
    s = _mm_srai_epi32(s, kPrecisionBits);
    s = _mm_packus_epi16(_mm_packs_epi32(s, s), s);
    const std::int32_t v = _mm_cvtsi128_si32(s);
    std::memcpy(dst + i, &v, 4);
  }
}

bool have_sse41() {
  static const bool have = [] {
    __builtin_cpu_init();  // may run before libgcc's own initialiser in a plugin
    return __builtin_cpu_supports("sse4.1") != 0;
  }();
  return have;
}

}  // namespace

void BilinearResizer::resize(const RgbImage& in, std::uint8_t* out, std::vector<std::uint8_t>& scratch) const {
  const bool need_h = out_w_ != in_w_;
  const bool need_v = out_h_ != in_h_;
  const auto plane = static_cast<std::size_t>(out_w_) * static_cast<std::size_t>(out_h_);
  const auto ow = static_cast<std::size_t>(out_w_);
  const bool simd = have_sse41();

  // Horizontal pass over only the input rows the vertical pass reads (as Pillow does), into RGBX
  // rows of the output width; without a horizontal pass the input rows are copied to RGBX.
  const int first_row = need_v ? vert_.bounds[0] : 0;
  const int last_row = need_v ? vert_.bounds[static_cast<std::size_t>(out_h_ - 1) * 2] +
                                    vert_.bounds[static_cast<std::size_t>(out_h_ - 1) * 2 + 1]
                              : in_h_;
  const std::size_t in_row = static_cast<std::size_t>(in_w_) * 3;
  const std::size_t row_bytes = ow * 4;
  scratch.resize(static_cast<std::size_t>(last_row - first_row) * row_bytes);
  for (int y = 0; y < last_row - first_row; ++y) {
    const std::uint8_t* src = in.pixels.data() + static_cast<std::size_t>(first_row + y) * in_row;
    std::uint8_t* dst = scratch.data() + static_cast<std::size_t>(y) * row_bytes;
    if (!need_h) {
      for (std::size_t x = 0; x < ow; ++x)
        for (std::size_t ch = 0; ch < 3; ++ch) dst[x * 4 + ch] = src[x * 3 + ch];
    } else if (simd) {
      horizontal_sse41(src, dst, out_w_, horiz_.bounds.data(), horiz_.weights.data(), horiz_.ksize);
    } else {
      for (std::size_t xx = 0; xx < ow; ++xx) {
        const int xmin = horiz_.bounds[xx * 2];
        const int xmax = horiz_.bounds[xx * 2 + 1];
        const std::int32_t* k = &horiz_.weights[xx * static_cast<std::size_t>(horiz_.ksize)];
        std::int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
        const std::uint8_t* p = src + static_cast<std::size_t>(xmin) * 3;
        for (int x = 0; x < xmax; ++x, p += 3) {
          s0 += p[0] * k[x];
          s1 += p[1] * k[x];
          s2 += p[2] * k[x];
        }
        dst[xx * 4] = clip8(s0);
        dst[xx * 4 + 1] = clip8(s1);
        dst[xx * 4 + 2] = clip8(s2);
      }
    }
  }
  const std::uint8_t* rows = scratch.data();

  std::vector<std::uint8_t> line(row_bytes);
  std::vector<std::int32_t> acc;
  for (int yy = 0; yy < out_h_; ++yy) {
    if (!need_v) {
      std::copy(rows + static_cast<std::size_t>(yy) * row_bytes, rows + static_cast<std::size_t>(yy + 1) * row_bytes,
                line.begin());
    } else {
      const int ymin = vert_.bounds[static_cast<std::size_t>(yy) * 2] - first_row;
      const int ymax = vert_.bounds[static_cast<std::size_t>(yy) * 2 + 1];
      const std::int32_t* k = &vert_.weights[static_cast<std::size_t>(yy) * static_cast<std::size_t>(vert_.ksize)];
      if (simd) {
        vertical_sse41(rows, row_bytes, ymin, ymax, k, line.data());
      } else {
        acc.assign(row_bytes, 1 << (kPrecisionBits - 1));
        for (int y = 0; y < ymax; ++y) {
          const std::uint8_t* src = rows + static_cast<std::size_t>(ymin + y) * row_bytes;
          for (std::size_t i = 0; i < row_bytes; ++i) acc[i] += src[i] * k[y];
        }
        for (std::size_t i = 0; i < row_bytes; ++i) line[i] = clip8(acc[i]);
      }
    }
    for (std::size_t x = 0; x < ow; ++x)
      for (std::size_t ch = 0; ch < 3; ++ch) out[ch * plane + static_cast<std::size_t>(yy) * ow + x] = line[x * 4 + ch];
  }
}

}  // namespace modlab::celeba
