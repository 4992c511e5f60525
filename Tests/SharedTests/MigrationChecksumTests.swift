import HeraldMigrations
import HeraldPostgres
import Testing

/// Every applied migration's checksum, as databases in the field have it in their ledgers. A
/// service refuses to start when a migration's text changed after it was applied, so an edit to
/// one (even of a blank) would stop every installation: add a new migration instead, and add its
/// checksum here.
@Suite struct MigrationChecksumTests {
  static let pinned: [String: [String]] = [
    "campaign": [
      "f2f3482d17583791dd152889ef871996de735b61aca0a5a4514d7e2746d4d967",
      "11b10e09aae28bf806968ed3f1c50e83c95fdef853cca422ace80933eb05b1cb",
      "bfd6e1bcb6081a81711c693ab8cab52fdc5e8f4e9e0f92b8588da9d907c8ba88",
      "3743f8cf62858c14e59a11ae9b3633e966ba942b6fedfc927a3deac509ef07ed",
      "b7601fb4977c4bc03c6a7acf10962dc96a210297e0a8665539b48c340bd88427",
      "e5e18ecf1f6afea976c3222ec9b116f6ec8686922357322dd1468b2f679c0be5",
      "4201ecb8d6d69d35d73604fda6816f437ecf924a1926fabb3189bc659b1a4089",
      "8423ccdc497c371af21d0f9ee8c5814b4e756166e89e8953b33955c41206a0f5",
      "4ce69db8e87287237b0363d7b40a145e4c1dce3e26fa0af0ff2a5029cb1472a8",
      "55528c7890fa5f22d232c9b3febd302a04de27e2dc7a16ee902d88882a5b2d40",
      "a52879e948ba6614ab5158d46ae8858a0c837af4fe6cb3a73badcf10d8d01eae",
      "09cf9dd37edb1501519e85262cdc75a13f4c092cd6b130aa4bd4fb95c899400d",
      "46924ecd67e5f0fb9ac63ceab89839d26ee9ad69d39dca73b092b33e2a5f32f5",
      "c73a43b8610caa04c14ea87cac115ff33571b11ceefb0560153645bfa14b58c5",
      "2f4bb16600ee2081c3cf8ef7a647271dc3a277bc1d81ffc9641576800317b90b",
      "546f77fe497e9428d4e9bf6b4f8dfa37852831d53ea718bcdbbfb8d9dc40773e",
    ],
    "delivery": [
      "3ed8c848cacd742a5229f633c9614f632918fe64b1f577a80cf6ecb7bceaf1ca",
      "809ead17311eb7329a025861fe94d73d3eeb62488ffbf50ff33b2d3c796e2425",
      "d07a166be71e86829f3ad62708ab67d024db6006587d78f5079234426f5b432f",
      "f8049f2c988c85b84f632a6203f0cf397a0fcfe8182e1af13615d61a6e35f6d7",
      "723694c23ddd46fc9332175ada20142d4f89f6ea94ca888ad7d94b0268f9eabf",
      "0e8c2ec35e273843884cf9dd8a5d867c1dbe0b842badf90824bf118b5420f246",
      "7b46fa53e230a930bd4702dbf0aa2f8dd42a367709db69d983ae234b4dca6987",
      "b0cbdb7ce7899a06934884ebf6966653f6bbb44e70443f5c190a37d7d8d9f92c",
      "7a9d669fb8b57141c812aa058c820d1c42d4853cbf9d69f7a1a05ff3bf5ee76f",
      "5296d56b5051db97bca993b576a71d801d1ff813caf6d84b5854009f8dc97480",
      "929e333f7d2706feb198e6b4a568ea399b63b846d3b035366f98a392888594e6",
      "afa014decf25dd33a2da74c1ec70c7d9b8f4641eba647423e4014ec6874639ee",
    ],
    "ratelimit": [
      "dcfea044c7582e0892bd72ee4773c1d6734277ed4f4d7c72728a765090e0469a",
      "15f44b2646f58ded3ebe73c80da1614a6a47e74246b60f6d5d1e6ef99519bad7",
    ],
    "sync": [
      "d39f31e1c57d1c520e8f32f36bcc1b39d02cef88f8a68620aeaa6864abbc2eb0",
      "de8bffda2f157bde93ae5a6e79ed4167a9a33ef118a3b26912505e95a7bdfe07",
    ],
    "verification": [
      "760abe2ced3a9bc68d844dec3f26e040da93d92ad22a6963be9276c7f712011e",
      "945d7dd1f01cd0c02561c15fa6abc8b20a6c5ea11576b5e7acf0f896633b9dbf",
    ],
    "gateway": [
      "6351cb9cef663d1fd2b8dec83b1553759727d114aab910af18096091e9309483",
      "a8b1afe4ef0955e8ed218034d51f6a3b8f4ce0b356a23fe128d063c9ca2fa293",
    ],
  ]

  @Test func appliedMigrationsKeepTheirChecksums() {
    #expect(Set(HeraldMigrations.all.map(\.schema)) == Set(Self.pinned.keys))
    for set in HeraldMigrations.all {
      let pinned = Self.pinned[set.schema] ?? []
      for (index, checksum) in pinned.enumerated() {
        let migration = set.migrations.indices.contains(index) ? set.migrations[index] : nil
        #expect(
          migration?.checksum == checksum,
          "\(set.schema) migration \(index + 1) '\(migration?.name ?? "missing")' changed: add a new migration instead")
      }
      #expect(
        set.migrations.count == pinned.count,
        "\(set.schema) has \(set.migrations.count) migrations, \(pinned.count) pinned: pin the new one's checksum here")
    }
  }
}
