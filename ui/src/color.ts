// One colour per service, the same on every page and every load: a hash of the name picks
// from a palette that leaves out red, which means an error everywhere in the UI.

const PALETTE = [
  "#4e79a7", // blue
  "#f28e2b", // orange
  "#59a14f", // green
  "#b07aa1", // purple
  "#76b7b2", // teal
  "#edc948", // yellow
  "#9c755f", // brown
  "#d37295", // raspberry
  "#499894", // dark teal
  "#a0cbe8", // light blue
  "#8cd17d", // light green
  "#b6992d", // olive
  "#d4a6c8", // lilac
  "#ffbe7d", // apricot
  "#79706e", // grey
  "#86bcb6", // sea green
];

export const ERROR_COLOR = "#dc2626";

const cache = new Map<string, string>();

/** FNV-1a, 32 bits. */
function hash(text: string): number {
  let value = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) {
    value ^= text.charCodeAt(index);
    value = Math.imul(value, 0x01000193);
  }
  return value >>> 0;
}

export function serviceColor(service: string): string {
  let color = cache.get(service);
  if (color === undefined) {
    color = PALETTE[hash(service) % PALETTE.length];
    cache.set(service, color);
  }
  return color;
}
