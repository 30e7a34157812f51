/// A JSON decoding error in one line an operator can act on: what is wrong and where.
package func describeDecodingFailure(_ error: any Error) -> String {
    guard let error = error as? DecodingError else { return "\(error)" }
    switch error {
    case .keyNotFound(let key, let context):
        return "missing '\(key.stringValue)' at \(codingPathText(context))"
    case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
        return "\(context.debugDescription) at \(codingPathText(context))"
    @unknown default:
        return "\(error)"
    }
}

private func codingPathText(_ context: DecodingError.Context) -> String {
    let text = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    return text.isEmpty ? "the top level" : text
}
