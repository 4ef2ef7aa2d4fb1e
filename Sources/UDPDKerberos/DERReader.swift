/// One element found by a ``DERReader``: its tag and where its contents lie, as offsets into the reader's bytes.
///
/// `Sendable`: a value.
public struct DERElement: Sendable, Hashable {
    /// The element's tag.
    public var tag: DERTag
    /// The offset of its first identifier octet.
    public var start: Int
    /// The offsets of its contents (after the identifier and length).
    public var contents: Range<Int>
}

/// Reads DER elements in place, trusting no length: every length is checked against the bytes that remain and
/// against a limit, nesting against a depth limit, and only DER's definite, shortest forms are accepted (so a
/// message that reads can be re-encoded byte for byte by ``DERNode``). It never allocates and never copies.
///
/// A reader walks the elements of one level; ``children(of:)`` gives a reader for a constructed element's contents,
/// one level deeper.
///
/// Not `Sendable`: it borrows the bytes it was given, which must outlive it.
public struct DERReader {
    /// What a reader accepts at most.
    public struct Limits: Sendable, Hashable {
        /// The deepest nesting: top-level elements are at depth 1.
        public var maxDepth: Int
        /// The longest input, and so the longest element.
        public var maxLength: Int

        /// Creates limits.
        public init(maxDepth: Int, maxLength: Int) {
            self.maxDepth = maxDepth
            self.maxLength = maxLength
        }

        /// Enough for any Kerberos message (an AS-REP nests 11 levels; a UDP datagram is under 64 KiB, a TCP
        /// Kerberos message is bounded by the service's `max-message`).
        public static let kerberos = Limits(maxDepth: 16, maxLength: 1 << 20)
    }

    /// The bytes read.
    public let bytes: UnsafeRawBufferPointer
    /// What this reader accepts at most.
    public let limits: Limits
    /// The depth of the elements this reader returns (1 at the top level).
    public let depth: Int
    /// The offset of the next element.
    public private(set) var position: Int
    /// The offset where this level ends.
    public let end: Int

    /// A reader of the top-level elements of `bytes`. Throws when `bytes` are longer than `limits.maxLength`.
    public init(_ bytes: UnsafeRawBufferPointer, limits: Limits = .kerberos) throws(DERError) {
        guard bytes.count <= limits.maxLength else {
            throw DERError(.lengthOverLimit(limit: limits.maxLength), at: 0)
        }
        self.init(bytes: bytes, limits: limits, depth: 1, range: 0..<bytes.count)
    }

    private init(bytes: UnsafeRawBufferPointer, limits: Limits, depth: Int, range: Range<Int>) {
        self.bytes = bytes
        self.limits = limits
        self.depth = depth
        self.position = range.lowerBound
        self.end = range.upperBound
    }

    /// Whether every element of this level has been read.
    public var isAtEnd: Bool { position >= end }

    /// The next element of this level, or `nil` at its end.
    public mutating func next() throws(DERError) -> DERElement? {
        guard !isAtEnd else { return nil }
        let element = try peekElement()
        position = element.contents.upperBound
        return element
    }

    /// The tag of the next element, without reading it; `nil` at the end of this level.
    public func peekTag() throws(DERError) -> DERTag? {
        guard !isAtEnd else { return nil }
        return try peekElement().tag
    }

    /// The next element, which must have `tag`.
    public mutating func read(_ tag: DERTag) throws(DERError) -> DERElement {
        let at = position
        guard let element = try next(), element.tag == tag else {
            throw DERError(.unexpectedTag(expected: tag, found: try? DERReader.tag(in: self, at: at)), at: at)
        }
        return element
    }

    /// The next element when it has `tag` (an OPTIONAL field); otherwise `nil`, and nothing is read.
    public mutating func readIfPresent(_ tag: DERTag) throws(DERError) -> DERElement? {
        guard try peekTag() == tag else { return nil }
        return try next()
    }

    /// Throws unless every element of this level has been read.
    public func expectEnd() throws(DERError) {
        guard isAtEnd else { throw DERError(.trailingBytes, at: position) }
    }

    /// A reader of `element`'s contents, one level deeper. Throws when it is primitive or would be too deep.
    public func children(of element: DERElement) throws(DERError) -> DERReader {
        guard element.tag.isConstructed else { throw DERError(.notConstructed(element.tag), at: element.start) }
        guard depth < limits.maxDepth else { throw DERError(.tooDeep(limit: limits.maxDepth), at: element.start) }
        return DERReader(bytes: bytes, limits: limits, depth: depth + 1, range: element.contents)
    }

    /// The contents of `element`, in place.
    public func contents(of element: DERElement) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[element.contents])
    }

    /// Reads every element below this level's remaining ones, to the depth limit, and returns how many there were:
    /// whether the rest is well-formed DER, without building anything.
    public mutating func skipAll() throws(DERError) -> Int {
        var count = 0
        while let element = try next() {
            count += 1
            if element.tag.isConstructed {
                var inner = try children(of: element)
                count += try inner.skipAll()
            }
        }
        return count
    }

    // MARK: Headers

    private static func tag(in reader: DERReader, at offset: Int) throws(DERError) -> DERTag? {
        var copy = reader
        copy.position = offset
        return try copy.peekTag()
    }

    /// Decodes the identifier and length at `position`, checking the length against what remains of this level.
    private func peekElement() throws(DERError) -> DERElement {
        let start = position
        var index = position
        guard index < end else { throw DERError(.truncated, at: index) }
        let first = bytes[index]
        index += 1
        let tagClass = DERTag.TagClass(rawValue: first >> 6)!
        let constructed = first & 0x20 != 0
        var number = UInt32(first & 0x1f)
        if number == 0x1f {
            number = 0
            var octets = 0
            while true {
                guard index < end else { throw DERError(.truncated, at: index) }
                let octet = bytes[index]
                index += 1
                if octets == 0 && octet == 0x80 { throw DERError(.nonMinimalEncoding, at: index - 1) }
                octets += 1
                guard octets <= 4 else { throw DERError(.tagNumberOverLimit, at: start) }
                number = number << 7 | UInt32(octet & 0x7f)
                if octet & 0x80 == 0 { break }
            }
            guard number >= 31 else { throw DERError(.nonMinimalEncoding, at: start) }
        }
        guard index < end else { throw DERError(.truncated, at: index) }
        let lengthOctet = bytes[index]
        index += 1
        var length = 0
        if lengthOctet < 0x80 {
            length = Int(lengthOctet)
        } else {
            let count = Int(lengthOctet & 0x7f)
            if count == 0 { throw DERError(.indefiniteLength, at: index - 1) }
            guard count <= 4 else { throw DERError(.lengthOverLimit(limit: limits.maxLength), at: index - 1) }
            guard end - index >= count else { throw DERError(.truncated, at: index) }
            if bytes[index] == 0 { throw DERError(.nonMinimalEncoding, at: index - 1) }
            for offset in 0..<count { length = length << 8 | Int(bytes[index + offset]) }
            if length < 0x80 { throw DERError(.nonMinimalEncoding, at: index - 1) }
            index += count
        }
        guard length <= limits.maxLength else { throw DERError(.lengthOverLimit(limit: limits.maxLength), at: start) }
        guard length <= end - index else { throw DERError(.truncated, at: start) }
        return DERElement(
            tag: DERTag(tagClass, number, constructed: constructed),
            start: start,
            contents: index..<(index + length)
        )
    }
}

// MARK: - Values

extension DERReader {
    /// The value of an INTEGER element: two's complement, shortest form, at most 64 bits.
    public func integer(_ element: DERElement) throws(DERError) -> Int64 {
        guard element.tag == .integer else {
            throw DERError(.unexpectedTag(expected: .integer, found: element.tag), at: element.start)
        }
        let value = contents(of: element)
        guard !value.isEmpty, value.count <= 8 else { throw DERError(.invalidInteger, at: element.start) }
        if value.count > 1, (value[0] == 0x00 && value[1] & 0x80 == 0) || (value[0] == 0xff && value[1] & 0x80 != 0) {
            throw DERError(.invalidInteger, at: element.start)
        }
        var result = Int64(Int8(bitPattern: value[0]))
        for byte in value.dropFirst() { result = result << 8 | Int64(byte) }
        return result
    }

    /// Reads `[number] EXPLICIT INTEGER`, the shape of most Kerberos fields.
    public mutating func readIntegerField(_ number: UInt32) throws(DERError) -> Int64 {
        let field = try read(.context(number))
        var inner = try children(of: field)
        let element = try inner.read(.integer)
        try inner.expectEnd()
        let value = try inner.integer(element)
        return value
    }

    /// Reads `[number] EXPLICIT` around one element and returns a reader positioned on that element.
    public mutating func readField(_ number: UInt32) throws(DERError) -> DERReader {
        try children(of: read(.context(number)))
    }
}

extension DERNode {
    /// Reads one whole element from `bytes` (nothing may follow) into a tree.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer,
        limits: DERReader.Limits = .kerberos
    )
        throws(DERError) -> DERNode
    {
        var reader = try DERReader(bytes, limits: limits)
        guard let element = try reader.next() else { throw DERError(.truncated, at: 0) }
        try reader.expectEnd()
        return try node(element, in: reader)
    }

    private static func node(_ element: DERElement, in reader: DERReader) throws(DERError) -> DERNode {
        guard element.tag.isConstructed else { return .primitive(element.tag, Array(reader.contents(of: element))) }
        var inner = try reader.children(of: element)
        var children: [DERNode] = []
        while let child = try inner.next() { children.append(try node(child, in: inner)) }
        return .constructed(element.tag, children)
    }
}
