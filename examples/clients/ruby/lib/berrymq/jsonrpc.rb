# frozen_string_literal: true

require "json"

module BerryMQ
  # JSON-RPC 2.0 as docs/protocol.md describes it: codes, request texts, replies.
  module JSONRPC
    CODES = {
      parse_error: -32_700, invalid_request: -32_600, method_not_found: -32_601,
      invalid_params: -32_602, internal_error: -32_603, unknown_token: -32_001,
      empty: -32_002, too_large: -32_003, unauthorised: -32_004, queue_full: -32_005,
      no_queue: -32_006, not_available: -32_007, malformed_token: -32_008,
      limit_reached: -32_009, not_allowed: -32_010
    }.freeze

    MESSAGES = {
      -32_700 => "Parse error", -32_600 => "Invalid Request", -32_601 => "Method not found",
      -32_602 => "Invalid params", -32_603 => "Internal error",
      -32_001 => "Unknown or expired token", -32_005 => "Queue is full"
    }.freeze

    # The largest request a node accepts by default (its max_size setting), in bytes.
    MAX_SIZE = 1_048_576
    # A message is at most max_size less this many bytes (docs/protocol.md, the size of a
    # message): the room a node keeps for the hops it adds and the request around it.
    MESSAGE_ENVELOPE = 512
    # A message without a uid is measured with one this long: the first node to forward it
    # gives it one of 20 characters.
    UID_ROOM = 20

    module_function

    # A text may nest arrays and objects at most this deep (docs/protocol.md, Nesting):
    # what a node reads, and what this library reads and writes.
    MAX_NESTING = 128
    # The deepest a message's own form [identifier, args, kwargs] may nest (args is level
    # 2), and one reply to ask: a node keeps, forwards and answers nothing deeper.
    MAX_MESSAGE_NESTING = 124

    # A \uXXXX escape of a UTF-16 surrogate (D800-DFFF).
    SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]\h\h/.freeze
    # One escape of a JSON text: a surrogate pair, a surrogate alone, or any other (read
    # from the left, so that the "\\" of "\\ud800" is taken as one escape).
    ESCAPE = /\\(?:u[dD][89abAB]\h\h\\u[dD][c-fC-F]\h\h|u[dD][89a-fA-F]\h\h|.)/m.freeze

    # The value of a JSON text read from a node (or sent to our callback server), nested
    # at most MAX_NESTING levels; raises JSON::ParserError (JSON::NestingError when deeper).
    # A string escape of a lone surrogate ("\ud800", which the protocol lets a node write
    # and a Ruby String cannot hold) is read as U+FFFD, as Go's encoding/json reads it.
    def parse(text)
      JSON.parse(without_lone_surrogates(text), max_nesting: MAX_NESTING)
    end

    # +text+ with every escape of a lone surrogate replaced by "\ufffd" (a pair is kept).
    def without_lone_surrogates(text)
      raw = text.b
      return text unless raw.match?(SURROGATE_ESCAPE)

      raw.gsub(ESCAPE) { |escape| escape.size == 6 && escape.match?(SURROGATE_ESCAPE) ? "\\ufffd" : escape }
         .force_encoding(Encoding::UTF_8)
    end

    # Compact JSON text of +value+. Only what JSON holds is sent (#check): anything else
    # raises ArgumentError naming it, rather than being turned into a string.
    def dump(value, what = "the value", limit: MAX_NESTING)
      check(value, what, limit)
      JSON.generate(value, max_nesting: false)
    rescue JSON::GeneratorError => e
      raise ArgumentError, "#{what} cannot be sent as JSON: #{e.message}"
    end

    # Raises ArgumentError unless +value+ is JSON nested at most +limit+ levels (the
    # outermost array or object is level 1): nil, true, false, an Integer, a finite Float,
    # a String of valid UTF-8 (or of another encoding that converts to it), and Arrays and
    # Hashes of these whose keys are Strings or Symbols (a Symbol key is sent as its name;
    # keyword arguments have them). Symbols, Time, objects and the like are not JSON.
    def check(value, what = "the value", limit = MAX_NESTING, depth = 0, path = "")
      case value
      when nil, true, false, Integer
        nil
      when Float
        not_json(what, path, "#{value}, not a finite number") unless value.finite?
      when String
        not_json(what, path, not_text(value)) unless text?(value)
      when Array, Hash
        if depth + 1 > limit
          raise ArgumentError, "#{what} nests arrays and objects more than #{limit} levels deep, " \
                               "the limit of the protocol; it was not sent"
        end
        if value.is_a?(Array)
          value.each_with_index { |v, i| check(v, what, limit, depth + 1, "#{path}[#{i}]") }
        else
          names = {}
          value.each do |k, v|
            unless k.is_a?(String) || k.is_a?(Symbol)
              not_json(what, path, "a Hash key #{k.inspect} (#{k.class}); JSON keys are strings")
            end
            name = k.to_s
            not_json(what, path, not_text(name, "a Hash key")) unless text?(name)
            not_json(what, path, "the key #{name.inspect} twice (as a String and a Symbol)") if names.key?(name)
            names[name] = true
            check(v, what, limit, depth + 1, "#{path}[#{k.inspect}]")
          end
        end
      else
        not_json(what, path, "a #{value.class} (#{value.inspect[0, 60]})")
      end
    end

    def text?(string)
      return false unless string.valid_encoding?
      return true if [Encoding::UTF_8, Encoding::US_ASCII].include?(string.encoding) || string.ascii_only?
      return false if string.encoding == Encoding::BINARY

      string.encode(Encoding::UTF_8)
      true
    rescue EncodingError
      false
    end

    # Why +string+ (not #text?), which is +noun+, is not text JSON can carry: "a String
    # that is not valid UTF-8" for bytes (ASCII-8BIT) that are not UTF-8, or in its own
    # encoding.
    def not_text(string, noun = "a String")
      if string.encoding == Encoding::BINARY
        utf8 = string.dup.force_encoding(Encoding::UTF_8).valid_encoding?
        return "#{noun} that is not valid UTF-8 (ASCII-8BIT bytes)" unless utf8

        return "#{noun} of ASCII-8BIT bytes (binary data, not text: force_encoding(\"UTF-8\") if it is UTF-8 text)"
      end
      return "#{noun} that is not valid #{string.encoding}" unless string.valid_encoding?

      "#{noun} in #{string.encoding} that does not convert to UTF-8"
    end

    def not_json(what, path, why)
      raise ArgumentError, "#{what} cannot be sent as JSON: #{path.empty? ? '' : "#{path} is "}#{why}"
    end

    # Raises ArgumentError unless the message [identifier, args, kwargs] is JSON a node
    # takes: nested at most MAX_MESSAGE_NESTING levels.
    def check_message(identifier, args, kwargs)
      check([identifier.to_s, args, kwargs], "message #{identifier}", MAX_MESSAGE_NESTING)
      nil
    end

    # The size of a message as a node measures it (docs/protocol.md, the size of a message):
    # the bytes of the JSON of [identifier, args, kwargs, extras], extras holding its uid (a
    # placeholder of UID_ROOM characters when it has none: the node adds one) and not its
    # hops. Ruby writes a few floats longer than Python does (1.0e+20, not 1e+20): such a
    # message is measured a little larger here, never smaller.
    def message_size(identifier, args, kwargs, uid = nil)
      extras = { "uid" => uid || ("u" * UID_ROOM) }
      JSON.generate([identifier.to_s, args, kwargs, extras], max_nesting: false).bytesize
    end

    # Raises MessageTooLarge, naming the limit, unless the message fits a node whose
    # max_size is +max_size+: at most max_size less MESSAGE_ENVELOPE bytes by #message_size.
    # Checked before anything is sent, so that a node never refuses it (nor takes it and
    # then cannot forward it).
    def check_message_size(identifier, args, kwargs, max_size, uid = nil)
      limit = max_size - MESSAGE_ENVELOPE
      size = message_size(identifier, args, kwargs, uid)
      return if size <= limit

      raise MessageTooLarge, "message #{identifier} is #{size} bytes of JSON (measured as a node does: "                              "[identifier, args, kwargs, extras] with a uid, without hops), over the "                              "limit of #{limit} bytes (max_size #{max_size} less #{MESSAGE_ENVELOPE}); "                              "it was not sent"
    end

    # Seconds as a message shows them: rounded to milliseconds.
    def seconds(value)
      value.is_a?(Float) ? value.round(3) : value
    end

    # The text of a request, refused with MessageTooLarge over +max_size+ bytes.
    def request_text(value, max_size = MAX_SIZE)
      text = dump(value, "a #{value['method']} request")
      if text.bytesize > max_size
        raise MessageTooLarge, "a #{value['method']} request of #{text.bytesize} bytes is over the " \
                               "limit of #{max_size} bytes; it was not sent"
      end
      text
    end

    # The result of +reply+ (a parsed response), or the node's error raised as RemoteError.
    # Accepts 1.0-style replies too (both members, one of them null).
    def result_of(reply, where)
      unless reply.is_a?(Hash) && (reply.key?("result") || reply.key?("error"))
        raise TransportError, "#{where} sent a malformed JSON-RPC reply: #{reply.inspect[0, 200]}"
      end

      error = reply["error"]
      return reply["result"] if error.nil?

      if error.is_a?(Hash) && error["code"] == CODES[:too_large]
        raise MessageTooLarge, "#{where} refused the request: it is over the node's size limit" \
                               "#{limit_of(error['data'])}; it was not run"
      end
      if error.is_a?(Hash)
        raise RemoteError.new(error["code"], error["message"].to_s, error["data"])
      end

      raise RemoteError.new(nil, error.to_s)
    end

    # "a queue on the node is full (queue_size 10000)" from the data of a node's Queue is
    # full, naming its setting and limit when it gave them.
    def full_queue(data)
      setting = data.is_a?(Hash) ? data["setting"] : nil
      limit = data.is_a?(Hash) ? data["limit"] : nil
      return "a queue on the node is full" unless setting.is_a?(String)

      "a queue on the node is full (#{setting}#{limit.is_a?(Integer) ? " #{limit}" : ''})"
    end

    # " (max_size 1000 bytes)" from the data of a node's Message too large, or "".
    def limit_of(data)
      limit = data.is_a?(Hash) ? data["limit"] : nil
      limit.is_a?(Integer) ? " (#{data['setting'] || 'max_size'} #{limit} bytes)" : ""
    end

    # Whether a parsed value is a response (result or error, no method) rather than a request.
    def response?(value)
      value.is_a?(Hash) && !value.key?("method") && (value.key?("result") || value.key?("error"))
    end

    # An error response for request +id+ (1.0 form when +v1+: both members present).
    def error_response(code, id, data = nil, v1: false)
      error = { "code" => code, "message" => MESSAGES.fetch(code, "Error") }
      error["data"] = data unless data.nil?
      v1 ? { "result" => nil, "error" => error, "id" => id } : { "jsonrpc" => "2.0", "error" => error, "id" => id }
    end

    def result_response(result, id, v1: false)
      v1 ? { "result" => result, "error" => nil, "id" => id } : { "jsonrpc" => "2.0", "result" => result, "id" => id }
    end

    # The answer to a parsed request text (a request or a batch) by +handler+ (which
    # answers one request Hash with a response Hash or nil), or nil when there is none.
    def answer(value, handler)
      return handler.call(value) unless value.is_a?(Array)
      return error_response(CODES[:invalid_request], nil) if value.empty?

      answers = value.map { |member| handler.call(member) }.compact
      answers.empty? ? nil : answers
    end
  end

  # Waits for one value handed over by another thread (a reply, a flush marker).
  class Waiter
    def initialize
      @lock = Mutex.new
      @cond = ConditionVariable.new
      @done = false
      @value = nil
    end

    def set(value = true)
      @lock.synchronize do
        @value = value
        @done = true
        @cond.broadcast
      end
    end

    # The value, or +on_timeout+ when none came within +timeout+ seconds (nil: no limit).
    def wait(timeout = nil, on_timeout = nil)
      deadline = timeout && (BerryMQ.monotonic + timeout)
      @lock.synchronize { BerryMQ.wait_for(@cond, @lock, deadline) { @done } ? @value : on_timeout }
    end
  end
end
