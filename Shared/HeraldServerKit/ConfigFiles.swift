import Foundation
import GRPCCore
import SwiftProtobuf

/// A configuration file (providers, limits) that cannot be used; the description names the file
/// and, for a bad entry, the field (e.g. `limits[1].unit`).
package struct ConfigFileError: Error, CustomStringConvertible {
  package var description: String

  package init(_ description: String) {
    self.description = description
  }
}

/// Configuration files are the protobuf JSON of a message of the service's API, so a file entry is
/// checked by the same code as the API call.
package enum ConfigFile {
  /// Reads `path` as the protobuf JSON of `M`; `kind` names the file in errors ("the limits file").
  package static func load<M: SwiftProtobuf.Message>(_ type: M.Type, path: String, kind: String) throws(ConfigFileError) -> M {
    let data: Data
    do {
      data = try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
      throw ConfigFileError("cannot read \(kind) \(path): \(error.localizedDescription)")
    }
    guard String(validating: data, as: UTF8.self) != nil else {
      throw ConfigFileError("\(kind) \(path) is not valid UTF-8 text")
    }
    let message: M
    do {
      message = try M(jsonUTF8Data: data)
    } catch {
      throw ConfigFileError("\(kind) \(path) is not valid: \(error)")
    }
    if let field = StringFieldCheck.firstNUL(in: message) {
      throw ConfigFileError("\(kind) \(path): \(StringFieldCheck.holdsNUL(field))")
    }
    return message
  }

  /// Checks each entry with `check`, which throws the API's error naming the field; the first bad
  /// one becomes a `ConfigFileError` naming the file.
  package static func entries<Entry, Checked>(
    _ entries: [Entry], path: String, kind: String, _ check: (Int, Entry) throws(RPCError) -> Checked
  ) throws(ConfigFileError) -> [Checked] {
    var checked: [Checked] = []
    for (index, entry) in entries.enumerated() {
      do throws(RPCError) {
        checked.append(try check(index, entry))
      } catch {
        throw ConfigFileError("\(kind) \(path): \(error.message)")
      }
    }
    return checked
  }
}
