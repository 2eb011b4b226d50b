/**
 * Closes every test run with one plain line, `Tests: N passed, N failed, N skipped`, and fails the run when a
 * test was skipped or none ran: a skipped or empty suite is a failure here, not a pass.
 */
import type { Reporter, TestModule } from "vitest/node"

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>) {
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state
        if (state === "passed") passed++
        else if (state === "failed") failed++
        else skipped++
      }
      if (module.state() === "failed" && module.children.size === 0) failed++
    }
    process.stdout.write(`\nTests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`)
    const problems = [
      ...(skipped > 0 ? ["a skipped test counts as a failure in this project"] : []),
      ...(passed + failed === 0 ? ["no test ran: an empty suite counts as a failure"] : []),
      ...(unhandledErrors.length > 0 ? ["there were unhandled errors during the run"] : [])
    ]
    if (problems.length > 0) {
      process.stdout.write(`Failing the run: ${problems.join("; ")}.\n`)
      process.exitCode = 1
    }
  }
}
