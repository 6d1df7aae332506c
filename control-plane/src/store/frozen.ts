// Config objects are shared, never copied: between revisions (an unchanged
// object is the same object), and between the store, the publisher and the
// request-path services. Freezing them makes "never edited" a fact: code that
// tried would throw (ES modules run in strict mode) instead of silently
// changing a committed revision.

/** Freezes `value` and everything reachable from it; returns it. */
export function deepFreeze<T>(value: T): T {
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const item = pending.pop();
    if (item === null || typeof item !== 'object' || Object.isFrozen(item)) continue;
    Object.freeze(item);
    for (const child of Object.values(item)) pending.push(child);
  }
  return value;
}
