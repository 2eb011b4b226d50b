import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real servers and SQLite files: give each file its own process, and fail on an empty run.
    pool: "forks",
    passWithNoTests: false,
    reporters: ["default", "./test/support/summaryReporter.ts"],
    // The services log what they do (logfmt lines on stdout); keep warnings and errors, drop the routine.
    onConsoleLog: (log) => !/ level=(INFO|DEBUG|TRACE) /.test(log),
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
