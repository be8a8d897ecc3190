# cmake/mpiimportPackaging.cmake — installs the core library for C/C++
# consumers (included from the top-level CMakeLists.txt, after core/):
#   <prefix>/lib/libmpiimport_core.a, <prefix>/include/mpiimport/*.h
#   <prefix>/lib/cmake/mpiimport/   find_package(mpiimport CONFIG): mpiimport::core
#   <prefix>/lib/pkgconfig/mpiimport.pc
# Every installed path is relative to the prefix, so the install works under
# `cmake --install --prefix` and can be moved afterwards.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MPIIMPORT_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/mpiimport)
set(MPIIMPORT_PKGCONFIG_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(TARGETS mpiimport_core EXPORT mpiimportTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/core/include/mpiimport
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h"
        PATTERN "util.h" EXCLUDE)  # the core's internal helpers (POSIX, inline), not API
install(EXPORT mpiimportTargets NAMESPACE mpiimport::
        DESTINATION ${MPIIMPORT_CMAKE_INSTALL_DIR})

configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/mpiimportConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/mpiimportConfig.cmake
  INSTALL_DESTINATION ${MPIIMPORT_CMAKE_INSTALL_DIR})
# 0.x: a minor release may change the API, so only the same minor matches.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/cmake/mpiimportConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/mpiimportConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/mpiimportConfigVersion.cmake
        DESTINATION ${MPIIMPORT_CMAKE_INSTALL_DIR})

# pkg-config: prefix from ${pcfiledir} (the .pc's own directory), libdir and
# includedir from prefix; absolute CMAKE_INSTALL_<dir>s are used as given.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(MPIIMPORT_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH MPIIMPORT_PC_UP /P/${MPIIMPORT_PKGCONFIG_INSTALL_DIR} /P)
  string(REGEX REPLACE "/$" "" MPIIMPORT_PC_UP "${MPIIMPORT_PC_UP}")
  set(MPIIMPORT_PC_PREFIX "\${pcfiledir}/${MPIIMPORT_PC_UP}")
endif()
foreach(kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${kind}}")
    set(MPIIMPORT_PC_${kind} "${CMAKE_INSTALL_${kind}}")
  else()
    set(MPIIMPORT_PC_${kind} "\${prefix}/${CMAKE_INSTALL_${kind}}")
  endif()
endforeach()
find_package(Threads REQUIRED)  # CMAKE_THREAD_LIBS_INIT: -pthread where libc lacks it
string(STRIP "-L\${libdir} -lmpiimport_core ${CMAKE_THREAD_LIBS_INIT}" MPIIMPORT_PC_LIBS)
configure_file(${CMAKE_CURRENT_LIST_DIR}/mpiimport.pc.in
               ${PROJECT_BINARY_DIR}/pkgconfig/mpiimport.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/mpiimport.pc
        DESTINATION ${MPIIMPORT_PKGCONFIG_INSTALL_DIR})
