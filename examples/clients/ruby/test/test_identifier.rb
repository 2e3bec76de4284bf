# frozen_string_literal: true

# A port of the Python core's tests/test_identifier.py (SPEC section 1): parsing,
# canonical text, matching, namespaces, local names, bad identifiers.
require_relative "test_helper"

class TestIdentifier < Minitest::Test
  include FreshBus
  Identifier = BerryMQ::Identifier

  PARSED = [
    ["test:run", "test", "run", nil, "test:run"],
    ["test:*", "test", "*", nil, "test:*"],
    ["*:run", "*", "run", nil, "*:run"],
    ["*:*", "*", "*", nil, "*:*"],
    ["*", "*", "*", nil, "*:*"],
    ["test", "test", "*", nil, "test:*"],
    ["job@ops:go", "job", "go", "ops", "job@ops:go"],
    ["job@ops", "job", "*", "ops", "job@ops:*"],
    ["ünïcode:ok", "ünïcode", "ok", nil, "ünïcode:ok"]
  ].freeze

  def test_parse
    PARSED.each do |text, name, action, namespace, canonical|
      ident = Identifier.new(text)
      assert_equal [name, action], [ident.name, ident.action], text
      if namespace.nil?
        assert_nil ident.namespace, text
      else
        assert_equal namespace, ident.namespace, text
      end
      assert_equal canonical, ident.to_s
      assert_equal "#{name}:#{action}", ident.id
    end
  end

  def test_parse_is_cached_and_immutable
    assert_same Identifier.new("cache:me"), Identifier.new("cache:me")
    assert_equal Identifier.new("cache:me"), Identifier.new("cache:me")
    assert_equal Identifier.new("test").hash, Identifier.new("test:*").hash
    assert Identifier.new("test").eql?(Identifier.new("test:*"))
    assert_predicate Identifier.new("x:y"), :frozen?
    refute_respond_to Identifier.new("x:y"), :name=
    assert_raises(FrozenError) { Identifier.new("x:y").instance_variable_set(:@name, "z") }
  end

  MATCHES = [
    ["task:*", "task:run", true],
    ["task:run", "task:*", true],
    ["*:stop", "a:stop", true],
    ["a:stop", "*:stop", true],
    ["*", "x:y", true],
    ["test", "test:anything", true],
    ["a:run", "b:run", false],
    ["a:run", "a:stop", false],
    ["*:run", "a:stop", false],
    ["job@ops:go", "job:go", false],
    ["job@ops:go", "job@ops:*", true],
    ["job@ops:go", "job@dev:go", false],
    ["*@ops", "x@ops:y", true],
    ["*", "x@ops:y", false]
  ].freeze

  def test_matches_is_symmetric
    MATCHES.each do |a, b, expected|
      assert_equal expected, Identifier.new(a).matches(b), "#{a} ~ #{b}"
      assert_equal expected, Identifier.new(b).matches(Identifier.new(a)), "#{b} ~ #{a}"
    end
  end

  def test_local_names
    assert Identifier.new("_private:x").local?
    assert Identifier.new("_x@ns").is_local
    refute Identifier.new("public:_x").local?
    refute Identifier.new("*:x").local?
  end

  INVALID = [
    [nil, "expected a String"],
    [42, "expected a String"],
    [:"a:b", "expected a String"],
    [["a:b"], "expected a String"],
    ["", "empty"],
    [":run", "name is empty"],
    ["a:", "action is empty"],
    ["a:b:c", "more than one ':'"],
    ["a b:c", "whitespace"],
    ["a:b\n", "whitespace"],
    ["a\tb", "whitespace"],
    ["a\x00:b", "control"],
    ["a\u200b:b", "control"],
    ["a\xff:b".b.force_encoding("UTF-8"), "not valid UTF-8"],
    ["x:\xff".b, "does not convert from ASCII-8BIT to UTF-8"],
    ["a\xff:b".dup.force_encoding("Shift_JIS"), "not valid Shift_JIS"],
    ["te*:run".encode("UTF-16LE"), "partial wildcard"],
    ["te*:run", "partial wildcard"],
    ["test:r*", "partial wildcard"],
    ["**", "partial wildcard"],
    ["a@:b", "namespace after '@' is empty"],
    ["a@b@c:d", "not a plain name"],
    ["a@*:d", "not a plain name"],
    ["a:b@c", "belongs after the name"],
    ["@ns:x", "name is empty"]
  ].freeze

  def test_invalid_identifiers_name_the_text
    INVALID.each do |bad, reason|
      error = assert_raises(BerryMQ::InvalidIdentifier, bad.inspect) { Identifier.new(bad) }
      assert_includes error.message, reason
      assert_includes error.message, bad.inspect
      assert_kind_of ArgumentError, error
      bad.nil? ? assert_nil(error.text) : assert_equal(as_named(bad), error.text)
    end
  end

  # How InvalidIdentifier names +bad+: converted to UTF-8 when it converts, else as it came.
  def as_named(bad)
    bad.is_a?(String) ? bad.encode("UTF-8") : bad
  rescue EncodingError
    bad
  end

  # A String of another encoding is converted to UTF-8 first: every call takes it, and
  # what it names is the same identifier as its UTF-8 text.
  def test_texts_of_other_encodings_are_read_as_utf8
    latin1 = "caf\xe9:x".dup.force_encoding("ISO-8859-1")
    utf16 = "job:done".encode("UTF-16LE")
    [[latin1, "café:x"], [utf16, "job:done"], ["job:done".b, "job:done"],
     ["job:done".encode("US-ASCII"), "job:done"]].each do |text, canonical|
      ident = Identifier.new(text)
      assert_equal [canonical, Encoding::UTF_8], [ident.to_s, ident.to_s.encoding], text.inspect
      assert_equal Identifier.new(canonical), ident
      assert ident.matches(canonical)
    end
    got = []
    BerryMQ.following_function(latin1) { |m| got << m.id }
    BerryMQ.following_function("job:*") { |m| got << m.id }
    BerryMQ.twitter("café:x")
    BerryMQ.twitter(latin1)
    BerryMQ.twitter(utf16)
    assert_equal %w[café:x café:x job:done], got
  end

  def test_bad_identifier_raised_at_the_call
    error = assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ.twitter("te*:run") }
    assert_includes error.message, '"te*:run"'
    error = assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ.twitter(["a:b"]) }
    assert_includes error.message, "expected a String, got Array"
    assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ.following_function("a:b:c") { nil } }
    assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ::Queue.new("") }
    assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ.regist_function(":x", ->(_m) {}) }
    assert_raises(BerryMQ::InvalidIdentifier) do
      Class.new do
        include BerryMQ::Follower
        following("a b")
      end
    end
  end
end
