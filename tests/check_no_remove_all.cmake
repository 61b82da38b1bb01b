# Fails if C++ source of the project calls std::filesystem::remove_all: PyTorch 2's libtorch.so
# exports its own copy of std::filesystem, whose remove_all crashes an executable that resolves to
# it (docs/gpu.md); modlab::runner::remove_tree is the replacement.
#   cmake -DROOT=<source dir> -P check_no_remove_all.cmake
cmake_policy(VERSION 3.18)
set(found "")
foreach(dir framework plugins tests bench fuzz docs/examples)
  file(GLOB_RECURSE sources "${ROOT}/${dir}/*.cpp" "${ROOT}/${dir}/*.hpp" "${ROOT}/${dir}/*.h")
  foreach(src ${sources})
    file(STRINGS "${src}" hits REGEX "remove_all\\(")
    foreach(line ${hits})
      file(RELATIVE_PATH rel "${ROOT}" "${src}")
      string(STRIP "${line}" line)
      string(REPLACE ";" "," line "${line}")
      list(APPEND found "${rel}: ${line}")
    endforeach()
  endforeach()
endforeach()
if(found)
  list(JOIN found "\n  " text)
  message(FATAL_ERROR "std::filesystem::remove_all is called (use modlab::runner::remove_tree, docs/gpu.md):\n  ${text}")
endif()
message(STATUS "no remove_all call in the C++ sources")
