// Copies pinned npm assets into web/static/vendor (git-ignored): nothing third-party is committed.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const vendor = join(root, "web", "static", "vendor");
mkdirSync(vendor, { recursive: true });
copyFileSync(join(root, "node_modules", "htmx.org", "dist", "htmx.min.js"), join(vendor, "htmx.min.js"));
console.log(`copied htmx into ${vendor}`);
