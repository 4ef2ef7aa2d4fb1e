import Testing
import UDPDTransport

@Suite("OldestFirstRegistry: the oldest first, whatever was removed in between")
struct OldestFirstRegistryTests {
    @Test("removeOldest follows registration order and skips what was removed")
    func order() {
        var registry = OldestFirstRegistry<Int, String>()
        for key in 0..<5 { registry.insert("v\(key)", for: key) }
        #expect(registry.remove(1) == "v1")
        #expect(registry.remove(1) == nil)
        registry.insert("again", for: 0)
        #expect(registry.count == 4)
        #expect(registry.values == ["v2", "v3", "v4", "again"])
        #expect(registry.removeOldest()?.key == 2)
        #expect(registry.removeOldest()?.key == 3)
        #expect(registry.removeOldest()?.key == 4)
        #expect(registry.removeOldest()?.value == "again")
        #expect(registry.removeOldest() == nil)
        #expect(registry.isEmpty)
    }

    @Test("a long churn of connections that come and go keeps the order and stays small")
    func churn() {
        var registry = OldestFirstRegistry<Int, Int>()
        for key in 0..<10_000 {
            registry.insert(key, for: key)
            if key >= 3 { registry.remove(key - 3) }
        }
        #expect(registry.values == [9_997, 9_998, 9_999])
        #expect(registry.removeOldest()?.key == 9_997)
        #expect(registry.count == 2)
    }
}
