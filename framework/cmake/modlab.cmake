# Shared build helpers: warnings, sanitizers, the LibTorch precompiled header and
# modlab_add_plugin().

# Warnings (as errors when MODLAB_WERROR) for modlab's own targets only.
function(modlab_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-unused-parameter)
  if(MODLAB_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

if(MODLAB_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

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
  target_link_libraries(${target} PRIVATE modlab::sdk ${P_LIBRARIES})
  set_target_properties(${target} PROPERTIES
    OUTPUT_NAME ${P_NAME}
    PREFIX ""
    LIBRARY_OUTPUT_DIRECTORY "${P_OUTPUT_DIR}"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_link_options(${target} PRIVATE -Wl,-z,defs)
  modlab_warnings(${target})
  modlab_use_pch(${target})
  if(NOT P_NO_INSTALL AND DEFINED MODLAB_PLUGIN_INSTALL_DIR)
    install(TARGETS ${target} LIBRARY DESTINATION ${MODLAB_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
