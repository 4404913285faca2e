//! Builds the Zig wrapper module `moert` (src/moert.zig) over moert.h and runs its tests.
//!
//!   python3 -m ziglang build test                      (library from ../../build-test)
//!   python3 -m ziglang build test -Dmoert-lib-dir=/opt/moert/lib -Dmoert-include-dir=/opt/moert/include
//!
//! The C declarations come from translate-c of moert.h (module "c", re-exported as
//! moert.c); the module links libmoert.so with an rpath to its folder.
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const lib_opt = b.option([]const u8, "moert-lib-dir", "folder with libmoert.so (default ../../build-test)");
    const inc_opt = b.option([]const u8, "moert-include-dir", "folder with moert.h (default ../../abi)");
    const lib_dir: std.Build.LazyPath = if (lib_opt) |d| b.graph.cwdRelativePath(d) else b.path("../../build-test");
    const inc_dir: std.Build.LazyPath = if (inc_opt) |d| b.graph.cwdRelativePath(d) else b.path("../../abi");

    const header = b.addTranslateC(.{
        .root_source_file = inc_dir.path(b, "moert.h"),
        .target = target,
        .optimize = optimize,
    });

    const moert = b.addModule("moert", .{
        .root_source_file = b.path("src/moert.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
    });
    moert.addImport("c", header.createModule());
    moert.addLibraryPath(lib_dir);
    moert.addRPath(lib_dir);
    moert.linkSystemLibrary("moert", .{});

    const test_step = b.step("test", "Run the wrapper's tests against the real library");
    const unit = b.addTest(.{ .root_module = moert });
    const run_unit = b.addRunArtifact(unit);
    run_unit.has_side_effects = true; // always run: the tests call the library, whose build may change
    test_step.dependOn(&run_unit.step);

    const moe_mod = b.createModule(.{
        .root_source_file = b.path("tests/moe_test.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
    });
    moe_mod.addImport("moert", moert);
    const moe = b.addTest(.{ .name = "moe_test", .root_module = moe_mod });
    const run_moe = b.addRunArtifact(moe);
    run_moe.has_side_effects = true; // and draw fresh random data every time
    test_step.dependOn(&run_moe.step);
}
