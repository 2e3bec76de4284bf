# frozen_string_literal: true

module BerryMQ
  # A parsed identifier `name[@namespace][:action]`: the same rules as the Python core
  # (berrymq/identifier.py, SPEC section 1).
  #
  #   BerryMQ::Identifier.new("job@ops:go")  # name "job", action "go", namespace "ops"
  #   BerryMQ::Identifier.new("test")        # action "*": a missing action means every one
  #
  # Matching is symmetric: names equal or either is "*", actions equal or either is "*",
  # and namespaces equal. A name starting with "_" is local: it never leaves the process.
  # Identifiers are immutable, parsed once and cached, and compare by their canonical text.
  class Identifier
    WILDCARD = "*"
    CACHE_LIMIT = 8192
    # The longest identifier, in characters of its canonical text ("name" counts as
    # "name:*"), as berrymq.identifier.MAX_IDENTIFIER_LENGTH.
    MAX_LENGTH = 256
    # What Python's rule (str.isprintable(), and no whitespace) refuses among assigned
    # characters: whitespace and separators, control, format and private-use characters.
    # Not \p{Cn}: a character Ruby's Unicode tables (13.0 in Ruby 3.1) call unassigned may
    # be assigned in the node's (Python 3.11 has 14.0: "\u{1FAE0}:x" is a valid
    # identifier there), so it is left to the node to judge. The format characters
    # assigned since Unicode 13 are listed, so that Ruby refuses what Python refuses.
    UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Co}\p{Z}\u0890\u0891\u{13439}-\u{1343F}]/.freeze
    WHITESPACE = /[\p{Z}\t\n\v\f\r\u001C-\u001F\u0085]/.freeze

    @cache = {}
    @cache_lock = Mutex.new

    class << self
      # The Identifier for +text+ (an Identifier is returned as it is). Raises
      # InvalidIdentifier naming the text when it is not a valid identifier.
      def new(text)
        return text if text.is_a?(Identifier)

        cached = text.is_a?(String) ? @cache[text] : nil
        return cached if cached

        ident = super(text)
        @cache_lock.synchronize do
          @cache.clear if @cache.size >= CACHE_LIMIT
          @cache[text.frozen? ? text : text.dup.freeze] = ident
        end
        ident
      end
      alias parse new

      # The Identifier of a message a node sent (it checked the text): parsed as #new does,
      # and when this library's tables refuse one of its characters or its length (a
      # character of a newer Unicode than Ruby's, say), taken as the node wrote it all the
      # same, so that no message the node delivered is lost over it. Raises
      # InvalidIdentifier only for a text no node writes (not a String, a partial
      # wildcard, two ':').
      def from_node(text)
        new(text)
      rescue InvalidIdentifier
        raise unless text.is_a?(String)

        allocate.tap { |ident| ident.send(:initialize, text, checked: false) }
      end
    end

    attr_reader :name, :action, :namespace, :id

    def initialize(text, checked: true)
      unless text.is_a?(String)
        raise InvalidIdentifier.new(text, "expected a String, got #{text.class}")
      end
      raise InvalidIdentifier.new(text, "it is empty") if text.empty?
      unless text.valid_encoding?
        raise InvalidIdentifier.new(text, "it is not valid #{text.encoding}")
      end

      text = utf8(text)
      check_characters(text) if checked

      head, colon, action = text.partition(":")
      if colon.empty?
        action = WILDCARD
      else
        raise InvalidIdentifier.new(text, "it has more than one ':'") if action.include?(":")

        check_part(text, action, "action")
      end
      name, at, namespace = head.partition("@")
      check_part(text, name, "name")
      if action.include?("@")
        raise InvalidIdentifier.new(text, "'@namespace' belongs after the name, before ':'")
      end

      ns = nil
      unless at.empty?
        raise InvalidIdentifier.new(text, "the namespace after '@' is empty") if namespace.empty?
        if namespace.include?("@") || namespace.include?(WILDCARD)
          raise InvalidIdentifier.new(text, "the namespace #{namespace.inspect} is not a plain name")
        end

        ns = namespace.freeze
      end
      @name = name.freeze
      @action = action.freeze
      @namespace = ns
      @id = "#{name}:#{action}".freeze
      @text = (ns ? "#{name}@#{ns}:#{action}" : @id).freeze
      check_length(text, colon.empty?) if checked
      @local = name.start_with?("_")
      freeze
    end

    # Whether messages with this identifier stay in the process (the name starts with "_").
    def local?
      @local
    end
    alias is_local local?

    # Whether the name or the action is "*".
    def wildcard?
      @name == WILDCARD || @action == WILDCARD
    end

    # Whether a message named by one of the two would reach a receiver of the other.
    def matches(other)
      other = Identifier.new(other)
      @namespace == other.namespace &&
        (@name == other.name || @name == WILDCARD || other.name == WILDCARD) &&
        (@action == other.action || @action == WILDCARD || other.action == WILDCARD)
    end
    alias matches? matches

    # The canonical text: "name:action" or "name@namespace:action".
    def to_s
      @text
    end

    def inspect
      "#<BerryMQ::Identifier #{@text}>"
    end

    def ==(other)
      other.is_a?(Identifier) && other.to_s == @text
    end
    alias eql? ==

    def hash
      [Identifier, @text].hash
    end

    private

    # +text+ in UTF-8 (identifiers are compared, matched and sent as UTF-8): a String of
    # another encoding is converted (ISO-8859-1 "caf\xE9", UTF-16), one that does not
    # convert (bytes over 127 in a binary String) raises InvalidIdentifier naming it.
    def utf8(text)
      return text if text.encoding == Encoding::UTF_8
      return text.dup.force_encoding(Encoding::UTF_8) if text.encoding.ascii_compatible? && text.ascii_only?

      text.encode(Encoding::UTF_8)
    rescue EncodingError => e
      raise InvalidIdentifier.new(text, "it does not convert from #{text.encoding} to UTF-8 (#{e.message})")
    end

    # Raises InvalidIdentifier naming the first character Python's rule refuses, and what
    # kind of character it is (an emoji is not "whitespace").
    def check_characters(text)
      index = text.index(UNPRINTABLE)
      return unless index

      char = text[index]
      kind = if WHITESPACE.match?(char) then "whitespace"
             elsif char.match?(/\p{Cc}/) then "a control character"
             elsif char.match?(/\p{Co}/) then "a private-use character"
             else "an invisible format (control) character"
             end
      raise InvalidIdentifier.new(text, "it contains #{kind}: U+#{format('%04X', char.ord)} at index #{index} " \
                                        "(identifiers are printable words)")
    end

    # Raises InvalidIdentifier when the canonical text is over MAX_LENGTH characters.
    def check_length(text, no_action)
      return if @text.length <= MAX_LENGTH

      counted = no_action ? ", #{@text.length} with the ':*' that a missing action counts as" : ""
      raise InvalidIdentifier.new(text, "it is #{text.length} characters long#{counted}, over the limit of " \
                                        "#{MAX_LENGTH}")
    end

    def check_part(text, part, what)
      raise InvalidIdentifier.new(text, "the #{what} is empty") if part.empty?
      return unless part.include?(WILDCARD) && part != WILDCARD

      raise InvalidIdentifier.new(text, "the #{what} #{part.inspect} has a partial wildcard; use '*' alone")
    end
  end
end
