#pragma once
// JPEG decoding (libjpeg-turbo) and Pillow-compatible bilinear resizing for the celeba plugin.
// No LibTorch here: these run on worker threads and write into caller-owned buffers.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace modlab::celeba {

/// An 8-bit RGB image, `height` rows of `width * 3` interleaved bytes, plus one spare byte at the
/// end (the resizer reads pixels as 4-byte words).
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;
};

/// Reads a whole file into `bytes`; false with `error` set when it cannot be read.
bool read_file(const std::string& path, std::vector<std::uint8_t>& bytes, std::string& error);

/// The largest image decode_jpeg decodes (64 Mpixels, 192 MiB as RGB; CelebA's are 178 x 218).
inline constexpr std::uint64_t kMaxJpegPixels = std::uint64_t{1} << 26;

/// Decodes a JPEG held in memory into RGB with libjpeg's defaults (the same pixels as Pillow's
/// decoder: accurate integer IDCT, fancy upsampling). Greyscale JPEGs are replicated into three
/// channels. Returns false with `error` set for data that is not a complete, decodable JPEG
/// (including a stream that ends early, which libjpeg alone would only warn about) or that is larger
/// than `max_pixels`.
bool decode_jpeg(const std::uint8_t* data, std::size_t size, RgbImage& out, std::string& error,
                 std::uint64_t max_pixels = kMaxJpegPixels);

/// Resizes RGB images of one input size to one output size exactly as Pillow's
/// `Image.resize((w, h), Image.BILINEAR)` does, which is what torchvision's `Resize` does on PIL
/// images: a triangle filter whose support widens with the reduction factor (so it averages over
/// the whole source area, i.e. antialiases), 22-bit fixed-point weights, and rounding to 8 bits
/// after the horizontal and again after the vertical pass.
class BilinearResizer {
 public:
  BilinearResizer(int in_width, int in_height, int out_width, int out_height);
  int in_width() const { return in_w_; }
  int in_height() const { return in_h_; }
  /// Writes the result channel-major (CHW, uint8 [3, out_height, out_width]) to `out`.
  /// `scratch` is reused between calls to avoid allocations.
  void resize(const RgbImage& in, std::uint8_t* out, std::vector<std::uint8_t>& scratch) const;

 private:
  struct Coefficients {
    int ksize = 0;
    std::vector<int> bounds;             // per output pixel: first input index, number of taps
    std::vector<std::int32_t> weights;   // per output pixel: ksize fixed-point weights
  };
  static Coefficients precompute(int in_size, int out_size);

  int in_w_, in_h_, out_w_, out_h_;
  Coefficients horiz_, vert_;
};

}  // namespace modlab::celeba
