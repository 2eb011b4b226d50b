import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real servers and SQLite files: give each file its own process, and fail on an empty run.
    pool: "forks",
    passWithNoTests: false,
    // One throwaway PostgreSQL server for the run (Debian's postgresql-15 binaries): the registry's tests run
    // against it as well as against SQLite.
    globalSetup: ["./test/support/postgresGlobal.ts"],
    reporters: ["default", "./test/support/summaryReporter.ts"],
    // The services log what they do (logfmt lines on stdout); keep warnings and errors, drop the routine.
    onConsoleLog: (log) => !/ level=(INFO|DEBUG|TRACE) /.test(log),
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
