# Warnings and sanitizers for every target of ours (not for third-party code).
# -Wmissing-field-initializers is off: aggregates initialised with some fields
# left at their defaults are the idiom here (test case tables, option structs).
add_library(itkit_warnings INTERFACE)
target_compile_options(itkit_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-missing-field-initializers>)
# GCC 12's -Wrestrict misfires inside libstdc++'s std::string at -O3 (GCC PR 105329).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(itkit_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wno-restrict>)
endif()
if(ITKIT_WERROR)
  target_compile_options(itkit_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()

if(ITKIT_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

if(ITKIT_FUZZ AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "ITKIT_FUZZ=ON needs clang (CMAKE_CXX_COMPILER=clang++)")
endif()
