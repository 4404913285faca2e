# run.cmake — the install test: `cmake --install` of a moert build tree into a fresh prefix,
# checks of what landed there, then tests/consumer built against that prefix through
# find_package (shared and static) and through pkg-config, and run.
#
#   cmake -DBUILD_DIR=<moert build> -DWORK_DIR=<scratch folder> [-DC_FLAGS=...] -P run.cmake
#
# C_FLAGS carries the sanitizer flags of a sanitized moert build to the consumer (an
# ASan-instrumented libmoert.so only loads into an ASan program).
foreach(v BUILD_DIR WORK_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run.cmake: -D${v}=... is required")
  endif()
endforeach()
set(src ${CMAKE_CURRENT_LIST_DIR})
set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# What the prefix must hold.  libdir is lib (GNUInstallDirs outside /usr).
set(libdir ${prefix}/lib)
foreach(f include/moert.h lib/libmoert.a lib/libmoert.so lib/libmoert.so.0
          lib/cmake/moert/moertConfig.cmake lib/cmake/moert/moertConfigVersion.cmake
          lib/pkgconfig/moert.pc)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "the install has no ${f}")
  endif()
endforeach()
foreach(link libmoert.so libmoert.so.0)
  if(NOT IS_SYMLINK ${libdir}/${link})
    message(FATAL_ERROR "${link} is not a symbolic link")
  endif()
endforeach()
file(READ_SYMLINK ${libdir}/libmoert.so target)
if(NOT target STREQUAL "libmoert.so.0")
  message(FATAL_ERROR "libmoert.so points to ${target}, want libmoert.so.0")
endif()
find_program(READELF readelf)
if(READELF)
  run("readelf -d" ${READELF} -d ${libdir}/libmoert.so.0)
  if(NOT last_output MATCHES "SONAME\\)[^\n]*\\[libmoert\\.so\\.0\\]")
    message(FATAL_ERROR "libmoert.so.0 has no SONAME libmoert.so.0:\n${last_output}")
  endif()
endif()

set(cflags "-DCMAKE_C_FLAGS=${C_FLAGS}")
# find_package: the shared and the static library.
run("consumer configure (find_package)" ${CMAKE_COMMAND} -S ${src} -B ${WORK_DIR}/fp
    -DMOERT_CONSUMER_VIA=find_package -DCMAKE_PREFIX_PATH=${prefix} ${cflags})
run("consumer build (find_package)" ${CMAKE_COMMAND} --build ${WORK_DIR}/fp)
foreach(exe consumer_shared consumer_static)
  run("${exe}" ${WORK_DIR}/fp/${exe})
  message(STATUS "${exe}: ${last_output}")
endforeach()
# The shared one must have loaded the installed library, not the build tree's.
run("ldd" ldd ${WORK_DIR}/fp/consumer_shared)
if(NOT last_output MATCHES "libmoert\\.so\\.0 => ${libdir}/libmoert\\.so\\.0")
  message(FATAL_ERROR "consumer_shared does not load ${libdir}/libmoert.so.0:\n${last_output}")
endif()

# pkg-config, with only the installed prefix on its path.
set(ENV{PKG_CONFIG_PATH} ${libdir}/pkgconfig)
set(ENV{PKG_CONFIG_LIBDIR} ${libdir}/pkgconfig)
run("consumer configure (pkg-config)" ${CMAKE_COMMAND} -S ${src} -B ${WORK_DIR}/pc
    -DMOERT_CONSUMER_VIA=pkg-config ${cflags})
run("consumer build (pkg-config)" ${CMAKE_COMMAND} --build ${WORK_DIR}/pc)
run("consumer_pkgconfig" ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${libdir}
    ${WORK_DIR}/pc/consumer_pkgconfig)
message(STATUS "consumer_pkgconfig: ${last_output}")
message(STATUS "install + consumers: all passed")
