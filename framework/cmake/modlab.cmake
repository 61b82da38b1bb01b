# Shared build helpers: warnings, sanitizers, the LibTorch precompiled header and
# modlab_add_plugin().

# Warnings (as errors when MODLAB_WERROR) for modlab's own targets only.
function(modlab_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-unused-parameter)
  if(MODLAB_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
    # g++ 13 warns inside PyTorch 2's torch/csrc/autograd/custom_function.h (std::vector<bool>
    # reserve, inlined from libstdc++): shown, not fatal.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 13)
      target_compile_options(${target} PRIVATE -Wno-error=array-bounds)
    endif()
  endif()
endfunction()

if(MODLAB_SANITIZE OR MODLAB_FUZZ)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
if(MODLAB_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "MODLAB_FUZZ needs clang (libFuzzer): use the fuzz preset or -DCMAKE_CXX_COMPILER=clang++")
  endif()
  # Coverage for libFuzzer in every object; the fuzz targets alone link libFuzzer's main.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

# modlab_no_undefined(<shared library>): every symbol must resolve at link time (-z defs), so a
# missing library is a link error, not a dlopen failure. Not under clang's sanitizers: their
# runtime lives in the executable, so sanitized shared objects legitimately leave its symbols open.
function(modlab_no_undefined target)
  if(NOT ((MODLAB_SANITIZE OR MODLAB_FUZZ) AND CMAKE_CXX_COMPILER_ID STREQUAL "Clang"))
    target_link_options(${target} PRIVATE -Wl,-z,defs)
  endif()
endfunction()

# The allocator. LibTorch allocates and frees every intermediate tensor: a training step of a small
# model (the toy MoE: ~70 ops) spends about a tenth of its time in glibc's malloc/posix_memalign
# and free, and large tensors are handed back to the kernel and faulted in again. tcmalloc
# (Debian libtcmalloc-minimal4) caches both per size class; linked into the executable, ahead of
# libc, it serves every allocation of the process: LibTorch's and the plugins'. Not with the
# sanitizers, which bring their own allocator.
set(MODLAB_TCMALLOC_LIBRARY "")
if(MODLAB_TCMALLOC AND NOT MODLAB_SANITIZE AND NOT MODLAB_FUZZ)
  find_library(MODLAB_TCMALLOC_PATH NAMES tcmalloc_minimal libtcmalloc_minimal.so.4)
  if(MODLAB_TCMALLOC_PATH)
    set(MODLAB_TCMALLOC_LIBRARY "${MODLAB_TCMALLOC_PATH}")
    message(STATUS "modlab: allocator tcmalloc (${MODLAB_TCMALLOC_PATH})")
  else()
    message(STATUS "modlab: allocator glibc malloc (libtcmalloc-minimal4 not found; scripts/setup installs it)")
  endif()
endif()

# modlab_use_allocator(<executable>): links the allocator above, kept even though no symbol of
# the executable names it (the point is that it interposes malloc for every library).
function(modlab_use_allocator target)
  if(MODLAB_TCMALLOC_LIBRARY)
    target_link_libraries(${target} PRIVATE "-Wl,--push-state,--no-as-needed" "${MODLAB_TCMALLOC_LIBRARY}"
      "-Wl,--pop-state")
  endif()
endfunction()

# One precompiled header for every target that includes LibTorch. Targets reuse the PCH built
# for modlab_pch, so LibTorch's headers are parsed once per build instead of once per file.
function(modlab_use_pch target)
  if(TARGET modlab_pch AND NOT MODLAB_NO_PCH)
    target_precompile_headers(${target} REUSE_FROM modlab_pch)
    # The PCH is built with -fPIC; executables default to -fPIE, which GCC refuses to mix.
    # The last of the two flags wins, so add -fPIC after it.
    get_target_property(_type ${target} TYPE)
    if(_type STREQUAL "EXECUTABLE")
      target_compile_options(${target} PRIVATE -fPIC)
    endif()
  endif()
endfunction()

# modlab_skip_pch(<sources...>): sources that include no LibTorch header compile faster alone,
# without the precompiled header and outside unity batches (which would bring it back).
function(modlab_skip_pch)
  set_source_files_properties(${ARGN} PROPERTIES SKIP_PRECOMPILE_HEADERS ON SKIP_UNITY_BUILD_INCLUSION ON)
endfunction()

# modlab_add_plugin(NAME <name> SOURCES <files...> [LIBRARIES <libs...>] [OUTPUT_DIR <dir>] [NO_INSTALL])
# Builds a plugin shared object named <name>.so (no "lib" prefix) into the build's plugin folder,
# with hidden visibility, -z defs, warnings as errors and the shared PCH.
function(modlab_add_plugin)
  cmake_parse_arguments(P "NO_INSTALL" "NAME;OUTPUT_DIR" "SOURCES;LIBRARIES" ${ARGN})
  if(NOT P_NAME OR NOT P_SOURCES)
    message(FATAL_ERROR "modlab_add_plugin needs NAME and SOURCES")
  endif()
  if(NOT P_OUTPUT_DIR)
    set(P_OUTPUT_DIR "${MODLAB_PLUGIN_DIR}")
  endif()
  set(target modlab_plugin_${P_NAME})
  add_library(${target} MODULE ${P_SOURCES})
  set_property(GLOBAL APPEND PROPERTY MODLAB_PLUGIN_TARGETS ${target})  # every plugin of this build
  target_link_libraries(${target} PRIVATE modlab::sdk ${P_LIBRARIES})
  set_target_properties(${target} PROPERTIES
    OUTPUT_NAME ${P_NAME}
    PREFIX ""
    LIBRARY_OUTPUT_DIRECTORY "${P_OUTPUT_DIR}"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  modlab_no_undefined(${target})
  modlab_warnings(${target})
  modlab_use_pch(${target})
  if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
    target_compile_options(${target} PRIVATE -O2)  # an out-of-tree project that set no build type
  endif()
  if(NOT P_NO_INSTALL AND DEFINED MODLAB_PLUGIN_INSTALL_DIR)
    # <libdir>/modlab/plugins/x.so finds <libdir>/libmodlab_sdk.so
    set_target_properties(${target} PROPERTIES INSTALL_RPATH "$ORIGIN/../..")
    install(TARGETS ${target} LIBRARY DESTINATION ${MODLAB_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
