/// A problem with one record (its field and the reason); the record is skipped and reported in
/// the run's record errors.
struct RecordFailure: Error {
  var field: String
  var message: String
}
