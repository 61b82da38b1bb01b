// CelebA images: JPEG decoding (libjpeg-turbo behind modlab's error handling) and the
// Pillow-compatible resize of what decodes. The input is the file's bytes.
#include "celeba_image.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  modlab::celeba::RgbImage img;
  std::string error;
  // At most 1 Mpixel here (the product allows 64): the limit works the same at any size, and
  // decoding 64-Mpixel images would spend the fuzzing time in memset.
  if (!modlab::celeba::decode_jpeg(data, size, img, error, std::uint64_t{1} << 20)) {
    if (error.empty()) std::abort();  // a rejected image always says why
    return 0;
  }
  if (img.width <= 0 || img.height <= 0 ||
      img.pixels.size() < static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * 3)
    std::abort();
  const modlab::celeba::BilinearResizer resizer(img.width, img.height, 8, 6);
  std::vector<std::uint8_t> out(3 * 8 * 6), scratch;
  resizer.resize(img, out.data(), scratch);
  return 0;
}
