// Builds the UI into dist/, which is committed and embedded in the spanflow binary
// (crates/ui): hashed file names under dist/assets/ so they can be cached for good.
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    // No inlined data: URLs beyond tiny icons, no preload polyfill: one script, one stylesheet.
    assetsInlineLimit: 1024,
    modulePreload: { polyfill: false },
  },
});
