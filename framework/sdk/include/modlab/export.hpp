#pragma once
/// @file export.hpp
/// Symbol visibility. modlab builds everything with hidden visibility; SDK symbols that plugins
/// and the host share are marked MODLAB_API so their type info is unique across shared objects.

#if defined(_WIN32)
#define MODLAB_API __declspec(dllexport)
#else
#define MODLAB_API __attribute__((visibility("default")))
#endif
