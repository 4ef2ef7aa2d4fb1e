/// Open things (connections, usually) in the order they were registered, so that at a cap the oldest can be
/// closed first: the one model behind `max-connections`, the control socket's connection cap, and a listener's
/// list of connections to finish at shutdown.
///
/// The order is the order of ``insert(_:for:)`` calls, so the owner registers things where their order is decided
/// (for connections: as they are accepted, in accept order) and under one lock when several threads register.
/// Every operation is amortized O(1): removed entries are skipped lazily and compacted away once they outnumber
/// the live ones.
///
/// Not synchronized: its owner keeps it behind its own lock, together with whatever else that lock guards.
/// `Sendable` when its keys and values are.
public struct OldestFirstRegistry<Key: Hashable, Value> {
    private var entries: [Key: (sequence: UInt64, value: Value)] = [:]
    /// Keys in registration order, from `head` on; an element whose key is gone (or registered again since) is
    /// skipped.
    private var order: [(sequence: UInt64, key: Key)] = []
    private var head = 0
    private var nextSequence: UInt64 = 0

    /// Creates an empty registry.
    public init() {}

    /// The number of things registered.
    public var count: Int { entries.count }

    /// Whether nothing is registered.
    public var isEmpty: Bool { entries.isEmpty }

    /// Everything registered, oldest first.
    public var values: [Value] {
        order[head...].compactMap { element in
            entries[element.key].flatMap { $0.sequence == element.sequence ? $0.value : nil }
        }
    }

    /// Whether `key` is registered.
    public func contains(_ key: Key) -> Bool { entries[key] != nil }

    /// Registers `value` under `key` as the newest; a value already under `key` is replaced and counts as new.
    public mutating func insert(_ value: Value, for key: Key) {
        entries[key] = (nextSequence, value)
        order.append((nextSequence, key))
        nextSequence &+= 1
        compactIfSparse()
    }

    /// Removes what is registered under `key`, and returns it.
    @discardableResult
    public mutating func remove(_ key: Key) -> Value? {
        let removed = entries.removeValue(forKey: key)?.value
        compactIfSparse()
        return removed
    }

    /// Removes the oldest thing registered, and returns its key and value.
    public mutating func removeOldest() -> (key: Key, value: Value)? {
        while head < order.count {
            let element = order[head]
            head += 1
            if let entry = entries[element.key], entry.sequence == element.sequence {
                entries[element.key] = nil
                compactIfSparse()
                return (element.key, entry.value)
            }
        }
        return nil
    }

    /// Drops skipped elements once they are more than the live ones (and a few), so memory stays in proportion to
    /// what is registered.
    private mutating func compactIfSparse() {
        guard order.count > 2 * entries.count + 16 else { return }
        order = order[head...].filter { entries[$0.key]?.sequence == $0.sequence }
        head = 0
    }
}

extension OldestFirstRegistry: Sendable where Key: Sendable, Value: Sendable {}
