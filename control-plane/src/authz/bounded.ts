// The eviction rule the authz caches share (verified tokens, answers): at most
// `max` entries, the oldest (insertion order) dropped first. Cheap, and a hot
// entry is simply re-added on its next miss.

export function setBounded<K, V>(entries: Map<K, V>, key: K, value: V, max: number): void {
  if (entries.size >= max && !entries.has(key)) {
    const oldest = entries.keys().next();
    if (!oldest.done) entries.delete(oldest.value);
  }
  entries.set(key, value);
}
