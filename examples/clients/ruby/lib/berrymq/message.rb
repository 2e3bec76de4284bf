# frozen_string_literal: true

module BerryMQ
  # What receivers get: #id ("name:action", as sent), #name, #action, #namespace (nil for
  # the default one), #args (a frozen Array), #kwargs (a frozen Hash with Symbol keys) and
  # #identifier (the parsed Identifier). Keyword arguments are also readable as methods:
  # message.user for user: "bob". A message that came from a node looks the same.
  class Message
    attr_reader :identifier, :args, :kwargs, :uid, :hops

    def initialize(identifier, args = [], kwargs = {}, uid: nil, hops: 0)
      @identifier = Identifier.new(identifier)
      @args = args.dup.freeze
      @kwargs = kwargs.each_with_object({}) { |(k, v), h| h[k.to_sym] = v }.freeze
      @uid = uid
      @hops = hops
      freeze
    end

    def id
      @identifier.id
    end

    def name
      @identifier.name
    end

    def action
      @identifier.action
    end

    def namespace
      @identifier.namespace
    end

    # Calls +callable+ with the keyword arguments: message.apply(method(:save)).
    def apply(callable)
      callable.call(**@kwargs)
    end

    # The wire form [identifier, args, kwargs] (with extras when the message has them).
    def to_wire
      extras = {}
      extras["uid"] = @uid if @uid
      extras["hops"] = @hops if @hops.positive?
      wire = [@identifier.to_s, @args, @kwargs]
      extras.empty? ? wire : wire << extras
    end

    def to_s
      "#{@identifier} #{JSON.generate(@args, max_nesting: false)}" \
        "#{@kwargs.empty? ? '' : " #{JSON.generate(@kwargs, max_nesting: false)}"}"
    end

    def inspect
      "#<BerryMQ::Message #{self}>"
    end

    def ==(other)
      other.is_a?(Message) && other.identifier == @identifier && other.args == @args &&
        other.kwargs == @kwargs
    end

    def respond_to_missing?(name, include_private = false)
      @kwargs.key?(name) || super
    end

    def method_missing(name, *rest)
      return @kwargs[name] if rest.empty? && @kwargs.key?(name)

      super
    end
  end
end
