import CYAML

/// Turns YAML text into a `YAMLNode` tree with libyaml's event (parser) API.
///
/// Only what a configuration file needs is accepted: one document of scalars, sequences and mappings. Aliases are
/// rejected rather than resolved, so every value an operator reads in an error sits where the error points; tags
/// other than `!!str` are rejected too. Syntax errors end parsing, since libyaml cannot recover from them.
enum YAMLParser {
    /// How deeply collections may nest; a configuration needs four levels, and the limit keeps hostile input from
    /// exhausting the stack when the tree is torn down.
    static let maximumDepth = 64

    /// The outcome of parsing: the document's root (`nil` for an empty stream) or the problems found.
    struct Outcome {
        var root: YAMLNode?
        var problems: [(position: SourcePosition, message: String)]
    }

    /// A sequence or mapping being read. A struct mutated in place at the top of the stack, so that appending to
    /// its items never copies them (an enum payload taken out and put back did, making long lists quadratic).
    private struct Frame {
        var start: SourcePosition
        var isSequence: Bool
        var items: [YAMLNode] = []
        var entries: [YAMLNode.Entry] = []
        var pendingKey: YAMLNode?
    }

    /// Parses `text`, which holds at most one YAML document.
    static func parse(_ text: String) -> Outcome {
        var bytes = Array(text.utf8)
        let length = bytes.count
        bytes.append(0)  // libyaml asserts on a null input pointer, which an empty array would give
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            return Outcome(root: nil, problems: [(SourcePosition(line: 1, column: 1), "out of memory parsing YAML")])
        }
        defer { yaml_parser_delete(&parser) }
        return bytes.withUnsafeBufferPointer { buffer in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, length)
            return run(&parser, bytes: buffer)
        }
    }

    private static func run(_ parser: inout yaml_parser_t, bytes: UnsafeBufferPointer<UInt8>) -> Outcome {
        var outcome = Outcome(root: nil, problems: [])
        var stack: [Frame] = []
        var documents = 0
        while true {
            var event = yaml_event_t()
            guard yaml_parser_parse(&parser, &event) == 1 else {
                outcome.problems.append(syntaxProblem(parser, bytes: bytes))
                outcome.root = nil
                return outcome
            }
            defer { yaml_event_delete(&event) }
            let position = Self.position(event.start_mark)
            var completed: YAMLNode?
            switch event.type {
            case YAML_STREAM_END_EVENT:
                if !outcome.problems.isEmpty { outcome.root = nil }
                return outcome
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents > 1 {
                    outcome.problems.append(
                        (position, "a configuration file holds one YAML document; a second starts here")
                    )
                    outcome.root = nil
                    return outcome
                }
            case YAML_ALIAS_EVENT:
                let name = string(event.data.alias.anchor) ?? ""
                outcome.problems.append((position, "YAML aliases ('*\(name)') are not supported; write the value out"))
                completed = YAMLNode(content: .scalar("", .plain), position: position)
            case YAML_SCALAR_EVENT:
                let scalar = event.data.scalar
                let text =
                    scalar.value.map { pointer in
                        String(decoding: UnsafeBufferPointer(start: pointer, count: scalar.length), as: UTF8.self)
                    } ?? ""
                var style: YAMLNode.ScalarStyle = scalar.style == YAML_PLAIN_SCALAR_STYLE ? .plain : .quoted
                if let tag = string(scalar.tag) {
                    if tag == "tag:yaml.org,2002:str" {
                        style = .quoted
                    } else {
                        outcome.problems.append((position, "YAML tags ('\(tag)') are not supported"))
                    }
                }
                completed = YAMLNode(content: .scalar(text, style), position: position)
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                guard stack.count < maximumDepth else {
                    outcome.problems.append((position, "the document nests more than \(maximumDepth) levels deep"))
                    outcome.root = nil
                    return outcome
                }
                let isSequence = event.type == YAML_SEQUENCE_START_EVENT
                let tag = isSequence ? event.data.sequence_start.tag : event.data.mapping_start.tag
                if let tag = string(tag), tag != "tag:yaml.org,2002:seq", tag != "tag:yaml.org,2002:map" {
                    outcome.problems.append((position, "YAML tags ('\(tag)') are not supported"))
                }
                stack.append(Frame(start: position, isSequence: isSequence))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                let frame = stack.removeLast()
                completed = YAMLNode(
                    content: frame.isSequence ? .sequence(frame.items) : .mapping(frame.entries),
                    position: frame.start
                )
            default:
                break
            }
            if let node = completed {
                attach(node, to: &stack, root: &outcome.root)
            }
        }
    }

    private static func attach(_ node: YAMLNode, to stack: inout [Frame], root: inout YAMLNode?) {
        guard !stack.isEmpty else {
            root = node
            return
        }
        let top = stack.count - 1
        if stack[top].isSequence {
            stack[top].items.append(node)
        } else if let key = stack[top].pendingKey {
            stack[top].entries.append(YAMLNode.Entry(key: key, value: node))
            stack[top].pendingKey = nil
        } else {
            stack[top].pendingKey = node
        }
    }

    private static func syntaxProblem(
        _ parser: yaml_parser_t,
        bytes: UnsafeBufferPointer<UInt8>
    ) -> (
        position: SourcePosition, message: String
    ) {
        let problem = string(parser.problem) ?? "invalid YAML"
        var message = "YAML syntax error: \(problem)"
        if let context = string(parser.context) {
            message += " (\(context) at \(Self.position(parser.context_mark)))"
        }
        if parser.error == YAML_READER_ERROR {
            // The reader reports a byte offset, not a mark.
            return (position(ofByte: parser.problem_offset, in: bytes), message)
        }
        return (Self.position(parser.problem_mark), message)
    }

    /// libyaml's marks count from 0; positions count from 1.
    private static func position(_ mark: yaml_mark_t) -> SourcePosition {
        SourcePosition(line: Int(mark.line) + 1, column: Int(mark.column) + 1)
    }

    /// The line and column (in characters, as libyaml counts them) of the byte at `offset`.
    static func position(ofByte offset: Int, in bytes: some Collection<UInt8>) -> SourcePosition {
        var line = 1
        var column = 1
        for byte in bytes.prefix(offset) {
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1
            }
        }
        return SourcePosition(line: line, column: column)
    }

    private static func string(_ pointer: UnsafePointer<CChar>?) -> String? {
        pointer.map { String(cString: $0) }
    }

    private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: UnsafePointer($0)) }
    }
}
