# frozen_string_literal: true

module BerryMQ
  # The root of every error this library raises.
  class Error < StandardError; end

  # An identifier text that berryMQ cannot accept; the message names the text and why.
  # An ArgumentError, as Python's InvalidIdentifier is a ValueError.
  class InvalidIdentifier < ArgumentError
    attr_reader :text, :reason

    def initialize(text, reason)
      @text = text
      @reason = reason
      super("invalid identifier #{text.inspect}: #{reason}")
    end
  end

  # Raised by Queue#get_nowait (and get after its timeout) when nothing is stored, and by
  # BerryMQ.get / BerryMQ.get_nowait when the node's queue is empty.
  class Empty < Error; end

  # A bounded queue refused a message (it was not stored): a local Queue, or a queue on a
  # node (send_message answered Queue is full, -32005), whose #data then names the node's
  # setting and limit ({"setting" => "queue_size", "limit" => 10000, "refused" => [0]}).
  class QueueFull < Error
    attr_reader :data

    def initialize(message = "Queue is full", data = nil)
      @data = data
      super(message)
    end
  end

  # Receivers raised while BerryMQ.raise_errors is true: raised from twitter after every
  # receiver ran; #errors holds the exceptions in the order they happened.
  class ReceiverErrors < Error
    attr_reader :errors

    def initialize(errors)
      @errors = errors
      super("#{errors.size} receiver(s) raised: " +
            errors.map { |e| "#{e.class}: #{e.message}" }.join("; "))
    end
  end

  # A failure while carrying messages between processes.
  class TransportError < Error; end

  # The connection or the node is gone; what was being sent was not delivered.
  class ConnectionClosed < TransportError; end

  # A request over the size limit (1 MiB, or the connection's max_size:); it was not sent
  # and the connection stays usable. Also raised when the node refused a request as too
  # large (its max_size is lower): nothing of it ran, and over TCP the node closed the
  # connection.
  class MessageTooLarge < TransportError; end

  # An error object the node answered: #code is the JSON-RPC code (see
  # BerryMQ::JSONRPC::CODES), #data berryMQ's explanation when the node gave one.
  class RemoteError < TransportError
    attr_reader :code, :data

    def initialize(code, message, data = nil)
      @code = code
      @data = data
      text = "#{message} (#{code})"
      text += ": #{data}" if data.is_a?(String)
      text += ": #{JSON.generate(data, max_nesting: false)}" if data.is_a?(Hash) || data.is_a?(Array)
      super(text)
    end
  end

  # Stands in the list BerryMQ.ask returns for a receiver that raised (here or on a node);
  # it is returned, not raised.
  class ReplyError < Error
    attr_reader :exception_type, :receiver, :node

    def initialize(exception_type, message, receiver = "", node = "")
      @exception_type = exception_type
      @receiver = receiver
      @node = node
      @text = message
      super("#{receiver.empty? ? 'receiver' : receiver} raised #{exception_type}: #{message}")
    end

    # The failure's own text (Exception#message is the whole sentence).
    def reason
      @text
    end

    def to_h
      { "type" => exception_type, "message" => @text, "receiver" => receiver, "node" => node }
    end

    def self.from_h(hash)
      new(hash.fetch("type", "Error").to_s, hash.fetch("message", "").to_s,
          hash.fetch("receiver", "").to_s, hash.fetch("node", "").to_s)
    end

    def ==(other)
      other.is_a?(ReplyError) && other.to_h == to_h
    end
  end
end
