# The conformance core (reference, cases, problem builder, checks, runner; no cmocka): included from the top-level
# CMakeLists whether or not tests are built, because the installed flashport-tune checks every candidate with it.
set(CONF_WARNINGS -Wall -Wextra -Werror)

add_library(flashport_conformance_core STATIC
    ${CMAKE_CURRENT_LIST_DIR}/conf_dtype.c ${CMAKE_CURRENT_LIST_DIR}/conf_reference.c
    ${CMAKE_CURRENT_LIST_DIR}/conf_reference_bwd.c ${CMAKE_CURRENT_LIST_DIR}/conf_cases.c
    ${CMAKE_CURRENT_LIST_DIR}/conf_problem.c ${CMAKE_CURRENT_LIST_DIR}/conf_check.c
    ${CMAKE_CURRENT_LIST_DIR}/conf_mirror.c ${CMAKE_CURRENT_LIST_DIR}/conf_runner.c
    ${CMAKE_CURRENT_LIST_DIR}/conf_config_check.c)
set_target_properties(flashport_conformance_core PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
target_include_directories(flashport_conformance_core PUBLIC ${CMAKE_CURRENT_LIST_DIR} ${PROJECT_SOURCE_DIR}/api)
target_compile_options(flashport_conformance_core PRIVATE ${CONF_WARNINGS})
target_link_libraries(flashport_conformance_core PUBLIC flashport m)
# The float64 reference dominates the suite's run time: optimise it even in an unconfigured build, and spread
# it over the cores when OpenMP is there (optional; the code has no hard dependency on it).
get_property(_conf_multi_config GLOBAL PROPERTY GENERATOR_IS_MULTI_CONFIG)
if(NOT CMAKE_BUILD_TYPE AND NOT _conf_multi_config)
    target_compile_options(flashport_conformance_core PRIVATE -O2)
endif()
find_package(OpenMP COMPONENTS C QUIET)
if(OpenMP_C_FOUND)
    target_link_libraries(flashport_conformance_core PRIVATE OpenMP::OpenMP_C)
endif()
