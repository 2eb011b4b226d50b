/**
 * Packages the benchmark uses that the project has only as transitive dependencies (better-sqlite3 through
 * @effect/sql-sqlite-node, undici through @effect/platform-node), resolved from the package that depends on them,
 * and node-postgres (a dependency of the project).
 */
export { default as Pg } from "pg"
export { Database, Pool } from "../axon-component/modules.js"
