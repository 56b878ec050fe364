# find_package(orchestra) gives the imported target orchestra::orchestra:
# liborchestra.so with include/orchestra.h. It needs nothing else at build
# time (llama.cpp is found at run time through the library's RPATH).
include("${CMAKE_CURRENT_LIST_DIR}/orchestraTargets.cmake")
