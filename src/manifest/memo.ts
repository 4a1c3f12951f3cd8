/**
 * Memoise a pure parser of strings. Results must be immutable (they are frozen here), since
 * every caller shares them. Bounded: the table is dropped when it grows past `max` entries.
 */
export function memoise<T extends object>(parse: (s: string) => T, max = 4096): (s: string) => T {
  const table = new Map<string, T>();
  return (s: string): T => {
    const hit = table.get(s);
    if (hit !== undefined) return hit;
    const v = Object.freeze(parse(s));
    if (table.size >= max) table.clear();
    table.set(s, v);
    return v;
  };
}
